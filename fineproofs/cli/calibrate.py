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
    default=None,
    metavar="FILE",
    help="Human-graded proofs (CSV/JSONL/parquet) with the columns problem_id, problem, proof, "
    "human_grade [, id, human_category, grading_guidelines, reference_solution, rubric]. "
    "Default: the profile's grading.calibration.ROLE.file.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the store and the report. Default: ./fineproofs-calibration (ignored by git).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most N rows, taken round-robin over problems. Default: the profile's grading.calibration.ROLE.limit.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=None,
    help="Leave out (and count) proofs longer than this: for judges with a short context. "
    "Default: the profile's grading.calibration.ROLE.max_chars.",
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
    default=None,
    help="Bootstrap resamples of the problems for the 95 % intervals. Default: the profile's (1000).",
)
@click.option("--seed", type=int, default=None, help="Seed of the bootstrap. Default: the profile's (0).")
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

    Every setting not given on the command line comes from the profile's
    grading.calibration.ROLE, exactly as the build applies it (file, columns, limit,
    max_chars, bootstrap, seed, thresholds): the same profile reports the same figures.
    """
    from fineproofs.pipelines.calibration import calibrate_role, figures_of, role_settings

    prof = load_profile(profile)
    cfg = role_settings(prof, role, file=against, columns=_columns(columns), limit=limit, max_chars=max_chars,
                        bootstrap=bootstrap, seed=seed)  # fmt: skip
    if not cfg.file:
        raise click.UsageError(
            f"--against FILE is needed: profile {prof.name!r} names no grading.calibration.{role}.file"
        )
    out = output or Path("fineproofs-calibration")
    result = calibrate_role(prof, role, cfg, out, progress=not no_progress)
    if not as_json:
        click.echo((out / "calibration" / f"{role}.md").read_text(encoding="utf-8"))
        r = result["requests"]
        click.echo(f"{r['generated']} generated, {r['cached']} from the store; report in {out / 'calibration'}")
    else:
        click.echo(json.dumps(figures_of(result), ensure_ascii=False))
