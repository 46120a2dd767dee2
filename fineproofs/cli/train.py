"""``fineproofs train sft|rl|rc`` and ``fineproofs eval`` (heavy imports inside the commands).

Each command takes a config (``--config paper`` = the QED-Nano recipe, the default;
``--config embedded`` = the same stage on 2 CPU cores with SmolLM2-135M; or a YAML
path), the data (a ``fineproofs build`` run directory or a Hub dataset id), an output
directory, and ``--set key.sub=value`` overrides. Training resumes from the last
checkpoint in the output directory unless ``--no-resume``.
"""

from __future__ import annotations

from pathlib import Path

import click

from fineproofs.cli.base import Command, Group


def _common(f):
    f = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config key, e.g. --set trainer.max_steps=10 (repeatable).",
    )(f)
    f = click.option("--no-resume", is_flag=True, help="Start over even if OUTPUT has checkpoints.")(f)
    f = click.option(
        "--model", default=None, help="Policy to train: Hub id, local dir or `embedded` (overrides model.name)."
    )(f)
    f = click.option(
        "--output",
        "-o",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Output directory (checkpoints, final model, judge store, run record).",
    )(f)
    f = click.option(
        "--data",
        "-d",
        default=None,
        help="A `fineproofs build` run directory, parquet file/dir, or Hub dataset id (overrides data.source).",
    )(f)
    f = click.option(
        "--config",
        "-c",
        "config",
        default="paper",
        show_default=True,
        help="Bundled config (paper, embedded) or a YAML file.",
    )(f)
    return f


def _run(stage: str, config, data, output, model, no_resume, overrides):
    from fineproofs.train.config import load_stage_config

    cfg = load_stage_config(stage, config, list(overrides))
    if stage == "sft":
        from fineproofs.train.sft import run_sft as fn
    elif stage == "rl":
        from fineproofs.train.rl import run_rl as fn
    else:
        from fineproofs.train.rc import run_rc as fn
    res = fn(cfg, output, data=data, model=model, resume=not no_resume)
    click.echo(res.summary())
    if res.metrics:
        import json

        click.echo(json.dumps(res.metrics, indent=2, default=str))


@click.group(cls=Group)
def train() -> None:
    """Train a proof model the QED-Nano way: sft -> rl (rubric rewards) -> rc (reasoning cache).

    Multi-GPU: launch through accelerate with a shipped config, e.g.
    `accelerate launch --config_file $(python -c "import fineproofs.train as t;
    print(t.config_path('accelerate_zero3.yaml'))") -m fineproofs train sft ...`
    (see train/README.md).
    """


@train.command("sft")
@_common
def sft(config, data, output, model, no_resume, overrides):
    """Supervised fine-tuning on FineProofs-SFT `messages` (assistant-only loss, packing)."""
    _run("sft", config, data, output, model, no_resume, overrides)


@train.command("rl")
@_common
def rl(config, data, output, model, no_resume, overrides):
    """GRPO with the rubric judge's grade / 7 as reward (judge failures masked)."""
    _run("rl", config, data, output, model, no_resume, overrides)


@train.command("rc")
@_common
def rc(config, data, output, model, no_resume, overrides):
    """GRPO over reasoning-cache states (T-turn chains with a frozen summariser)."""
    _run("rc", config, data, output, model, no_resume, overrides)


@train.command(cls=Command)
@click.option(
    "--stage",
    "stages",
    type=click.Choice(["sft", "rl", "rc", "eval"]),
    multiple=True,
    help="Stage(s) to check (default: all).",
)
@click.option(
    "--config",
    "-c",
    "configs",
    multiple=True,
    help="Bundled config name or YAML file (repeatable; default: every shipped config of each stage).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one config key (repeatable).")
@click.option(
    "--help-fields", is_flag=True, help="After each config: every key with its value there and what it means."
)
def check(stages, configs, overrides, help_fields):
    """Validate training configs against the installed transformers/TRL and this machine.

    Loads each config, builds its TRL arguments as the installed versions define them
    (renamed keys translated, GPU recipes checked on CPU without running), and says which
    fast paths (attention kernel, Liger's fused cross-entropy) this machine would use and
    what a fallback costs. Exits non-zero on the first invalid config.
    """
    import transformers
    import trl

    from fineproofs.train.config import bundled_configs, check_stage_config

    click.echo(f"transformers {transformers.__version__}, trl {trl.__version__}")
    n = 0
    for stage in stages or ("sft", "rl", "rc", "eval"):
        for name in configs or bundled_configs(stage):
            lines = check_stage_config(stage, name, list(overrides))
            n += 1
            click.echo(f"{stage} {name}: ok")
            for line in lines:
                click.echo(f"    {line}")
            if help_fields:
                from fineproofs.knobs import flat_values, knobs
                from fineproofs.knobs import lines as knob_lines
                from fineproofs.train.config import STAGE_MODELS, load_stage_config

                cfg = load_stage_config(stage, name, list(overrides))
                for line in knob_lines(knobs(STAGE_MODELS[stage]), flat_values(cfg.model_dump())):
                    click.echo(f"    {line}")
    click.echo(f"{n} config(s) valid")


@train.command("launch-config", cls=Command)
@click.argument("kind", type=click.Choice(["zero3", "fsdp"]))
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True, help="Machines in the job.")
@click.option(
    "--gpus-per-node", type=click.IntRange(min=1), default=8, show_default=True, help="Training GPUs per machine."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the accelerate config (YAML).",
)
def launch_config_cmd(kind, nodes, gpus_per_node, output):
    """Write an accelerate config (DeepSpeed ZeRO-3 or FSDP2) for NODES x GPUS-PER-NODE.

    The DeepSpeed file is named by its absolute path, so `accelerate launch
    --config_file OUTPUT` works from any directory and on every node of a Slurm job
    (pass --machine_rank, --main_process_ip and --main_process_port per node).
    """
    from fineproofs.train.launch import write_launch_config

    path = write_launch_config(kind, output, nodes, gpus_per_node)
    click.echo(f"wrote {path} ({kind}, {nodes} node(s) x {gpus_per_node} GPU(s))")


@click.command("eval", cls=Command)
@click.option(
    "--config",
    "-c",
    "config",
    default="paper",
    show_default=True,
    help="Bundled eval config (paper, embedded) or a YAML file.",
)
@click.option(
    "--model", default=None, help="Model under test (overrides policy.engine.model): checkpoint dir, Hub id, embedded."
)
@click.option(
    "--benchmark",
    "-b",
    default=None,
    help="IMO-ProofBench file (CSV / JSONL / parquet) or hf:<id>[@split] (overrides `benchmark`).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where results.json / results.parquet and the response store go.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="First N problems (Basic/Advanced interleaved)."
)
@click.option("--turns", type=click.IntRange(min=1), default=None, help="Reasoning-cache turns at test time.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one config key (repeatable).")
def eval_cmd(config, model, benchmark, output, limit, turns, overrides):
    """Evaluate on IMO-ProofBench: single pass and with the reasoning cache, judge on 0/1/6/7.

    Judge failures are reported and excluded from the means, never scored 0.
    """
    from fineproofs.train.config import load_stage_config
    from fineproofs.train.evaluate import run_eval

    sets = list(overrides)
    if limit:
        sets.append(f"limit={limit}")
    if turns:
        sets.append(f"rc_turns={turns}")
    cfg = load_stage_config("eval", config, sets)
    res = run_eval(cfg, output, model=model, benchmark=benchmark)
    click.echo(f"results: {Path(output) / 'results.json'}, {Path(output) / 'results.parquet'}")
    return res
