"""``fineproofs profiles``: list, show, and the fidelity table of the bundled profiles."""

from __future__ import annotations

import click

from fineproofs.cli.base import Group
from fineproofs.config import bundled_profiles, load_profile, profile_text

# what `profiles show` adds after a profile that has training configs of the same name
OBJECTIVE_KEYS = {
    "sft": ("model.name", "trainer.learning_rate", "trainer.max_length", "trainer.num_train_epochs"),
    "rl": (
        "trainer.num_generations",
        "trainer.learning_rate",
        "trainer.loss_type",
        "trainer.scale_rewards",
        "trainer.epsilon",
        "trainer.beta",
        "trainer.max_grad_norm",
        "trainer.weight_decay",
        "trainer.entropy_coef",
        "trainer.temperature",
        "trainer.max_completion_length",
    ),
    "rc": ("rc.turns", "rc.states_per_problem", "rc.summarizer.engine.model", "trainer.scale_rewards"),
    "eval": (
        "policy.sampling.max_tokens",
        "policy.sampling.temperature",
        "policy.sampling.top_p",
        "judge.engine.model",
        "rc_turns",
        "samples",
    ),
}


@click.group(cls=Group)
def profiles() -> None:
    """List and show the bundled profiles (copy one to start your own)."""


@profiles.command("list")
def profiles_list() -> None:
    """Names of the bundled profiles."""
    for name in bundled_profiles():
        click.echo(f"{name:12s} {load_profile(name).description}")


@profiles.command("show")
@click.argument("name")
@click.option(
    "--help-fields", is_flag=True, help="Instead of the YAML: every key with this profile's value and what it means."
)
def profiles_show(name: str, help_fields: bool) -> None:
    """Print a profile's YAML (redirect it to a file to edit your own); for a bundled
    profile with training configs of the same name, their objective settings follow as
    comments."""
    prof = load_profile(name)  # validates
    if help_fields:
        from fineproofs.config import Profile
        from fineproofs.knobs import flat_values, knobs, lines

        click.echo("\n".join(lines(knobs(Profile), flat_values(prof.model_dump()))))
        return
    click.echo(profile_text(name), nl=False)
    for line in _objective(name):
        click.echo(line)


@profiles.command("fields")
@click.argument("prefix", default="")
@click.option(
    "--stage",
    type=click.Choice(["profile", "sft", "rl", "rc", "eval"]),
    default="profile",
    show_default=True,
    help="Whose keys: a build profile's or a training / evaluation config's.",
)
@click.option("--markdown", is_flag=True, help="The reference of every config as Markdown (docs/config.md).")
def profiles_fields(prefix: str, stage: str, markdown: bool) -> None:
    """What every setting means: each key under PREFIX (e.g. grading, teacher.engine)
    with its type, default, bounds and description, read from the config's own fields
    (a role's engine and sampling are spelled out once, under the first role)."""
    from fineproofs.knobs import knobs, lines

    if markdown:
        click.echo(_config_reference(), nl=False)
        return
    items = [k for k in knobs(_model(stage), once=True) if k.key == prefix or k.key.startswith(prefix)]
    if not items:
        raise click.UsageError(f"no {stage} setting starts with {prefix!r}")
    click.echo("\n".join(lines(items)))


def _model(stage: str):
    if stage == "profile":
        from fineproofs.config import Profile

        return Profile
    from fineproofs.train.config import STAGE_MODELS

    return STAGE_MODELS[stage]


def _config_reference() -> str:
    from fineproofs.knobs import knobs, markdown

    out = [CONFIG_HEAD]
    for stage, title in (
        ("profile", "Build profiles (`fineproofs build --profile`, `fineproofs/profiles/*.yaml`)"),
        ("sft", "`fineproofs train sft` (`train/configs/sft_*.yaml`)"),
        ("rl", "`fineproofs train rl` (`train/configs/rl_*.yaml`)"),
        ("rc", "`fineproofs train rc` (`train/configs/rc_*.yaml`)"),
        ("eval", "`fineproofs eval` (`train/configs/eval_*.yaml`)"),
    ):
        out += [f"## {title}", "", *markdown(knobs(_model(stage), once=True)), ""]
    return "\n".join(out)


def _objective(name: str) -> list[str]:
    from fineproofs.errors import ConfigError
    from fineproofs.fieldpath import dig
    from fineproofs.train.config import load_stage_config

    lines = []
    for stage, keys in OBJECTIVE_KEYS.items():
        try:
            cfg = load_stage_config(stage, name, [])
        except ConfigError:
            return []  # not a bundled training config name
        lines.append(f"#   {stage}: " + ", ".join(f"{key}={dig(cfg, key, None)}" for key in keys))
    return [f"# training objective (`fineproofs train sft|rl|rc --config {name}`, `fineproofs eval`):", *lines]


@profiles.command("fidelity")
def profiles_fidelity() -> None:
    """The fidelity table (Markdown): every knob, QED-Nano's value and source file, the
    bundled profiles' values, and why they differ. docs/fidelity.md is this output."""
    from fineproofs.cards.fidelity import BEHAVIOURS, table
    from fineproofs.train.fidelity import BEHAVIOURS as TRAIN_BEHAVIOURS
    from fineproofs.train.fidelity import EVAL_NOTE, KNOBS, OPERATIONAL, differs, paper_configs

    names = [n for n in bundled_profiles() if n.startswith("paper")]
    profs = {n: load_profile(n) for n in names}
    out = [
        FIDELITY_HEAD,
        "## Building the data (profiles)",
        "",
        "| knob | QED-Nano | source | " + " | ".join(f"`{n}`" for n in names) + " | why |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table(profs)]
    out += [
        "",
        "Behaviour that is not a knob (every profile):",
        "",
        "| what | QED-Nano | fineproofs |",
        "|---|---|---|",
    ]
    out += [f"| {a} | {b} | {c} |" for a, b, c in BEHAVIOURS]
    cfgs = paper_configs()
    out += [
        "",
        "## Training and evaluation (`train/configs/*_paper.yaml`)",
        "",
        "| knob | QED-Nano | source | ours | why |",
        "|---|---|---|---|---|",
    ]
    for k in KNOBS:
        mark = " ≠" if differs(k, cfgs) else ""
        out.append(f"| `{k.key}` | {_md(k.release)} | {_md(k.source)} | {_md(k.value(cfgs))}{mark} | {_md(k.why)} |")
    out += [
        "",
        "Training and evaluation behaviour that is not a knob:",
        "",
        "| what | QED-Nano | fineproofs | knob |",
        "|---|---|---|---|",
    ]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in TRAIN_BEHAVIOURS]
    out += [
        "",
        "Every other setting of the training and evaluation configs runs the recipe without changing what is "
        "learned or how it is scored:",
        "",
        "| settings | what |",
        "|---|---|",
    ]
    out += [f"| `{pat}` | {_md(why)} |" for pat, why in OPERATIONAL]
    out += ["", EVAL_NOTE]
    click.echo("\n".join(out))


def _md(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


CONFIG_HEAD = """# Configuration reference

Every key of a build profile and of the training and evaluation configs: its type, its
default (with its bounds) and what it means, read from the configs' own field
descriptions. A role's `engine` and `sampling` keys are listed once, under the first
role; `<i>` stands for a list position and `<judge|grader>` for a mapping's key.
`fineproofs profiles fields [PREFIX] [--stage STAGE]` prints the same in a terminal,
`fineproofs profiles show NAME --help-fields` with a profile's values; an invalid or
unknown key in a config is reported with the same text. Generated by
`fineproofs profiles fields --markdown`; a test keeps it current.
"""


FIDELITY_HEAD = """# Fidelity to the QED-Nano release

What the `paper` profile and the `paper` training configs take from the QED-Nano release
(github CMU-AIRe/QED-Nano, the lm-provers/FineProofs-SFT and -RL dataset cards), knob by
knob: QED-Nano's value, the file it comes from, ours, and why where they differ. `≠` marks
a value that is not the release's; "not released" means the release does not say, and the
"why" column says what we chose. `paper-plus` keeps this project's improvements on
(strict score parsing, groups of equal rewards dropped). Generated by
`fineproofs profiles fidelity`; a test keeps it current.
"""
