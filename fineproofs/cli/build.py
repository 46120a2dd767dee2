"""``fineproofs build``: one split end to end, in one process or in shards."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from fineproofs import rundir
from fineproofs.cli.base import Command, profile_option
from fineproofs.config import load_profile, parse_override
from fineproofs.errors import IncompleteBuild, incomplete_message
from fineproofs.pipelines.recipes import RECIPES


@click.command(cls=Command)
@click.option(
    "--split",
    type=click.Choice(list(RECIPES)),
    default="rl",
    show_default=True,
    help="rl: rubrics + k student rollouts graded 0-7 (FineProofs-RL). "
    "sft: teacher distillation + grading (FineProofs-SFT, configs default/all).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (store, stages, quarantine, split, card). Default: ./fineproofs-<split>.",
)
@profile_option()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the first N problems after cleaning (default: the profile's limit).",
)
@click.option(
    "--benchmarks",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Benchmark file(s) to decontaminate against (CSV/JSONL/parquet); repeatable.",
)
@click.option(
    "--allow-contaminated",
    is_flag=True,
    help="Build without decontamination even if the profile requires it (the card says so).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm", "ray"]),
    default=None,
    help="datatrove executor for the ingest stages (default: the profile's executor.kind, local).",
)
@click.option(
    "--tasks",
    type=click.IntRange(min=1),
    default=None,
    help="datatrove tasks for the parallel ingest steps (default: the profile's executor.tasks).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one profile setting, the value read as YAML (e.g. grading.judges=3); repeatable. "
    "`fineproofs profiles fields` lists the keys.",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run the LLM stages in N shards by problem id, as tasks of the executor (local processes, a "
    "Slurm array, Ray), then merge them into one split.",
)
@click.option(
    "--shard",
    default=None,
    metavar="I/N",
    help="Run only shard I of N (0-based) into OUTPUT/shards/, e.g. from your own job array.",
)
@click.option(
    "--merge",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Merge the N finished shards of OUTPUT into the split and its card.",
)
@click.option("--push-to", default=None, metavar="ORG/NAME", help="Push the result to this Hub dataset repo.")
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="When items failed for transient reasons (a server that stayed down), write the split and card "
    "anyway, marked incomplete, and push them with --push-to; the command still exits 3. Without it such a "
    "build writes and pushes nothing. With --shard a shard is written marked incomplete; --merge and --shards "
    "merge such shards only with it.",
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def build(
    split,
    output,
    profile,
    limit,
    benchmarks,
    allow_contaminated,
    executor,
    tasks,
    sets,
    shards,
    shard,
    merge,
    push_to,
    allow_incomplete,
    no_progress,
):
    """Build a FineProofs split end to end.

    Reads the sources, parses, cleans, deduplicates and decontaminates them, writes
    rubrics, generates and grades proofs, and writes the split as parquet in the Hub
    layout with a dataset card. Every LLM completion is kept in OUTPUT/store.sqlite:
    re-running the same command generates nothing new.
    """
    from fineproofs.cli.summary import print_build_summary
    from fineproofs.pipelines.build import Build

    # --set first, the dedicated flags over it
    prof = load_profile(profile).with_overrides(**dict(parse_override(s) for s in sets))
    prof = prof.with_overrides(
        limit=limit,
        benchmarks=list(benchmarks) or None,
        executor=executor,
        tasks=tasks,
        **({"decontamination.required": False} if allow_contaminated else {}),
    )
    out = output or Path(f"fineproofs-{split}")
    if sum(x is not None for x in (shards, shard, merge)) > 1:
        raise click.UsageError("give one of --shards, --shard and --merge")
    if shard is not None:
        i, n = _shard_arg(shard)
        res = Build(prof, out, split, progress=not no_progress, shard=(i, n), allow_incomplete=allow_incomplete).run()
        click.echo(
            f"shard {i} of {n}: {res.generated} generated, {res.cached} from the store -> "
            f"{res.out_dir / rundir.SHARDS}; merge with --merge {n} when every shard is done"
        )
        if res.incomplete:
            raise IncompleteBuild(
                incomplete_message(res.incomplete, str(res.out_dir / rundir.SHARDS))
                + f"; shard {i} was written anyway, marked incomplete: --merge {n} --allow-incomplete merges it"
            )
        return
    if shards is not None:
        from fineproofs.pipelines.shards import merge_task, run_shards

        merge_step = functools.partial(merge_task, prof, out, split, shards, allow_incomplete=allow_incomplete)
        run_shards(prof, out, split, shards, merge=merge_step, allow_incomplete=allow_incomplete)
        if prof.executor.kind != "local":
            click.echo(
                f"submitted {shards} shards and their merge to {prof.executor.kind}; "
                f"`fineproofs status {out}` shows their progress"
            )
            return
        result = _read_result(out, split)
    elif merge is not None:
        from fineproofs.pipelines.build import merge_shards

        result = merge_shards(prof, out, split, merge, allow_incomplete)  # the split, build.json and the card
    else:  # the split, build.json and the card
        result = Build(prof, out, split, progress=not no_progress, allow_incomplete=allow_incomplete).run()
    print_build_summary(result)
    if push_to:
        from fineproofs.cards.hub import push_run

        url = push_run(out, push_to)
        click.echo(f"pushed to {url}")
    if result.incomplete:  # written (and pushed) on request: still not a finished build
        raise IncompleteBuild(
            incomplete_message(result.incomplete, str(out / rundir.STORE))
            + f"; the split was written{' and pushed' if push_to else ''} anyway, marked incomplete (--allow-incomplete)"
        )


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: write I/N, e.g. 3/8", param_hint="--shard") from None
    if not (n >= 1 and 0 <= i < n):
        raise click.BadParameter(f"{text!r}: I must be in 0..N-1", param_hint="--shard")
    return i, n


def _read_result(out: Path, split: str):
    from fineproofs.pipelines.build import BuildResult

    m = rundir.read_manifest(out / rundir.MANIFEST)
    return BuildResult(
        out_dir=out, split=split, counts=m["counts"], dropped=m["dropped"], rows=m["rows"], generated=m["generated"],
        cached=m["cached"], seconds=m["seconds"], card=out / rundir.CARD, decontaminated=m["decontaminated"],
        calibration=m.get("calibration") or {}, incomplete=m.get("incomplete") or {},
    )  # fmt: skip
