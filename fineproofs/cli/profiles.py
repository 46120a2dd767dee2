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
def profiles_show(name: str) -> None:
    """Print a profile's YAML (redirect it to a file to edit your own); for a bundled
    profile with training configs of the same name, their objective settings follow as
    comments."""
    load_profile(name)  # validates
    click.echo(profile_text(name), nl=False)
    for line in _objective(name):
        click.echo(line)


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


FIDELITY_HEAD = """# Fidelity to the QED-Nano release

What the `paper` profile and the `paper` training configs take from the QED-Nano release
(github CMU-AIRe/QED-Nano, the lm-provers/FineProofs-SFT and -RL dataset cards), knob by
knob: QED-Nano's value, the file it comes from, ours, and why where they differ. `≠` marks
a value that is not the release's; "not released" means the release does not say, and the
"why" column says what we chose. `paper-plus` keeps this project's improvements on
(strict score parsing, groups of equal rewards dropped). Generated by
`fineproofs profiles fidelity`; a test keeps it current.
"""
