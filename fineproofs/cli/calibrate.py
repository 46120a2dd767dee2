"""``fineproofs calibrate``: how well does a profile's judge agree with human grades?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fineproofs.cli.base import Command, profile_option
from fineproofs.config import load_profile


def _columns(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours or not theirs:
            raise click.BadParameter(f"{pair!r}: write FIELD=COLUMN, e.g. human_grade=points", param_hint="--column")
        out[ours.strip()] = theirs.strip()
    return out


@click.command(cls=Command)
@profile_option()
@click.option(
    "--role",
    type=click.Choice(["judge", "grader"]),
    default="judge",
    show_default=True,
    help="judge: grades student rollouts 0-7 against a rubric; grader: grades teacher proofs "
    "(on grading.grader_scale).",
)
@click.option(
    "--against",
    required=True,
    metavar="FILE",
    help="Human-graded proofs (CSV/JSONL/parquet) with the columns problem_id, problem, proof, "
    "human_grade [, id, human_category, grading_guidelines, reference_solution, rubric].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the store and the report. Default: ./fineproofs-calibration.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most N rows, taken round-robin over problems."
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=None,
    help="Leave out (and count) proofs longer than this: for judges with a short context.",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Read FIELD from COLUMN of the file (repeatable), e.g. --column human_grade=points.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of the problems for the 95 % intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object on the last line.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def calibrate(profile, role, against, output, limit, max_chars, columns, bootstrap, seed, as_json, no_progress):
    """Run a profile's judge (or grader) over human-graded proofs and report how far it agrees.

    The proofs go through the build's own grading path (prompt, sampling, retries,
    strict parsing, structured outputs, ensemble and quorum) and its response store
    OUTPUT/store.sqlite: re-running costs no request. Reported, each with a 95 %
    interval bootstrapped over problems: MAE (0-7), pass/fail accuracy (>= 6),
    four-category accuracy, quadratic weighted kappa, mean bias, parse-failure rate;
    plus a confusion table and the worst disagreements (OUTPUT/calibration/ROLE.md).
    """
    from fineproofs.calibration import calibrate as run
    from fineproofs.calibration import figures_of

    prof = load_profile(profile)
    out = output or Path("fineproofs-calibration")
    result = run(
        prof,
        role,
        against,
        out,
        columns=_columns(columns),
        limit=limit,
        max_chars=max_chars,
        bootstrap=bootstrap,
        seed=seed,
        progress=not no_progress,
    )
    if not as_json:
        click.echo((out / "calibration" / f"{role}.md").read_text(encoding="utf-8"))
        r = result["requests"]
        click.echo(f"{r['generated']} generated, {r['cached']} from the store; report in {out / 'calibration'}")
    else:
        click.echo(json.dumps(figures_of(result), ensure_ascii=False))
