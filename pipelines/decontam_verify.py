"""The LLM verifier of decontamination candidates in a build (``decontamination.verify_with``).

Ingest has removed what the offline detector decides (copies, disguises, paraphrases
whose formulas and words match). For the problems it kept, this step retrieves the
nearest benchmark problems again (at most ``neighbours`` each, retrieval score at least
``verify_floor``) and asks a model, under structured output, whether each pair is the
same problem up to rewording (:class:`~fineproofs.filters.verify.SameProblemVerifier`,
prompt ``same_problem``); every verdict goes through the build's response store, so a
re-run asks nothing again. A problem judged the same as a benchmark problem, or one the
model could not judge after its retries (never taken for clean), leaves the build: it is
written to ``quarantine/decontaminate_verify.jsonl`` with the benchmark problem, the
retrieval score and the model's reason (or why it could not answer), and joins the
decontamination report's ``flagged`` list with method ``verifier`` / ``undecided``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fineproofs import rundir
from fineproofs.config import Profile, RoleConfig
from fineproofs.engines.base import sampling_of
from fineproofs.filters.decontaminate import Decontaminator, decontam_settings, load_benchmarks
from fineproofs.filters.verify import SameProblemVerifier
from fineproofs.generation import CachedGenerator
from fineproofs.records import Problem

log = logging.getLogger(__name__)
QUARANTINE = "quarantine/decontaminate_verify.jsonl"


def verifier_role(profile: Profile) -> RoleConfig | None:
    """The role that verifies candidates, or None when the profile verifies none."""
    d = profile.decontamination
    if not d.verify_with or not d.benchmarks:
        return None
    return profile.judge if d.verify_with == "judge" else d.verifier


def verify_contamination(
    profile: Profile, problems: list[Problem], generator: CachedGenerator, out_dir: Path
) -> tuple[list[Problem], list[dict]]:
    """``(kept problems, flagged records)``: see the module docstring."""
    d = profile.decontamination
    role = verifier_role(profile)
    if role is None or not problems:
        return problems, []
    index = [p for ps in load_benchmarks(d.benchmarks) for p in ps]
    dec = Decontaminator(index, **decontam_settings(d))
    verifier = SameProblemVerifier(generator, sampling_of(role), max_attempts=d.verify_attempts)
    matches = dec.match_many([p.statement for p in problems], verifier, floor=d.verify_floor)
    kept, flagged = [], []
    for p, m in zip(problems, matches):
        if m is None:
            kept.append(p)
            continue
        flagged.append({"id": p.id, **m.as_dict()})
    if flagged:
        n_same = sum(1 for f in flagged if f["method"] == "verifier")
        log.info(
            "decontamination verifier: %d problems judged the same as a benchmark problem, %d undecided",
            n_same,
            len(flagged) - n_same,
        )
    by_id = {p.id: p for p in problems}
    rundir.write_jsonl(
        out_dir / QUARANTINE,
        ({**f, "statement": by_id[f["id"]].statement} for f in sorted(flagged, key=lambda f: f["id"])),
    )
    return kept, flagged
