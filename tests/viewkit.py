"""A synthetic run directory, laid out exactly like ``fineproofs build`` writes one.

Used by the viewer's tests and its benchmark (``bench/bench_viewer.py``): records are
the real dataclasses of :mod:`fineproofs.records`, the judge's requests go through the
real grading prompt and the real :class:`~fineproofs.store.ResponseStore`, the split is
real parquet. ``hostile=True`` puts HTML and script into a statement, a proof and a
judge reply, for the escaping tests.
"""

from __future__ import annotations

import dataclasses
import json
import random
import struct
import zlib
from pathlib import Path

from fineproofs import prompts, rundir
from fineproofs.records import FilterDecision, Grade, Problem, ProofSample
from fineproofs.store import ResponseStore, StoredResponse

HOSTILE = '<script>alert("pwned")</script><img src=x onerror="alert(1)"><b>bold?</b>'
COMPETITIONS = ["IMO", "USAMO", "BMO", "APMO", "EGMO", "RMM"]
SOURCES = ["aops_wiki", "olympiads", "demo_booklet"]
RUBRIC = (
    "1. (2 points) Sets up $x^2 + y^2 \\ge 2xy$.\n2. (5 points) Concludes by AM-GM.\n"
    "Zero credit:\n- Restating the problem.\nDeductions:\n- (-1 points) Missing the equality case."
)


def _statement(i: int, rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    return (
        f"Problem {i}: let $a_{{{i}}} = {a}$ and $b = \\frac{{{b}}}{{2}}$. Prove that for all reals $x, y$ "
        f"we have $x^2 + y^2 \\geq 2xy$ and that $\\sqrt{{{a}}} \\le {a}$ (case {rng.choice('ABCDEFG')})."
    )


def _proof(i: int, j: int, rng: random.Random) -> str:
    body = " ".join(
        rng.choice(["Clearly", "Hence", "Thus", "Note that", "So"]) + f" $x_{{{k}}} \\geq 0$."
        for k in range(rng.randint(5, 15))
    )
    return f"Proof {i}.{j}. Since $(x-y)^2 \\ge 0$ we get $x^2 + y^2 \\geq 2xy$. {body} $\\blacksquare$"


def write_run(
    path: str | Path, problems: int = 20, samples: int = 4, *, hostile: bool = False, seed: int = 0, store: bool = True
) -> Path:
    """Write a run directory with ``problems`` problems of ``samples`` student rollouts each."""
    rng = random.Random(seed)
    run = rundir.claim(path, what="output")
    probs = [_problem(i, rng) for i in range(problems)]
    if hostile and probs:
        probs[0].statement = f"Hostile {HOSTILE} statement with $a<b$ and $<script>x</script>$."
        probs[0].id = "hostile0000000000"
    rundir.write_jsonl(run / rundir.PROBLEMS, (p.to_dict() for p in probs))
    rollouts, grades, quarantine = [], [], []
    for i, p in enumerate(probs):
        for j in range(samples):
            proof = _proof(i, j, rng)
            if hostile and p is probs[0] and j == 0:
                proof = f"My proof {HOSTILE} ends here <score>7</score>."
            s = ProofSample(
                p.id,
                "student",
                j,
                "synthetic/student",
                f"thinking about {p.id} ... " * 3,
                proof,
                rng.choice(["stop", "stop", "length"]),
                120,
                rng.randint(50, 4000),
            )
            failed = rng.random() < 0.1
            flags = ["score_tag"] if "<score>" in proof else []
            g = Grade(
                s.key,
                None if failed else rng.randint(0, 7),
                "synthetic/judge",
                "failed" if failed else "ok",
                "unparseable: no score tag (after 3 attempts)" if failed else "",
                flags,
            )
            rollouts.append(s)
            grades.append(g)
            if failed:
                quarantine.append({"stage": "rollout_grades", "sample": s.key, "reason": g.reason})
    stages = run / rundir.STAGES
    rundir.write_jsonl(stages / "rubrics.jsonl", ({"problem_id": p.id, "rubric": RUBRIC, "attempts": 1} for p in probs))
    rundir.write_jsonl(stages / "rollouts.jsonl", (dataclasses.asdict(s) for s in rollouts))
    rundir.write_jsonl(stages / "rollout_grades.jsonl", (dataclasses.asdict(g) for g in grades))
    _write_ingest_quarantine(run, max(1, problems // 10), rng)
    rundir.write_jsonl(run / rundir.QUARANTINE / "llm.jsonl", quarantine)
    kept = [p for i, p in enumerate(probs) if i % 3 != 2]
    _write_split(run, kept, grades, samples)
    if store:
        _write_store(run, probs, rollouts, grades, hostile)
    _write_manifest(run, probs, kept, rollouts, grades, quarantine)
    (run / "plots").mkdir(exist_ok=True)
    (run / "plots" / "grade_histogram.png").write_bytes(tiny_png())
    return run


def _problem(i: int, rng: random.Random) -> Problem:
    p = Problem(
        _statement(i, rng),
        rng.choice(SOURCES),
        competition=rng.choice(COMPETITIONS),
        year=rng.randint(1990, 2024),
        category=rng.choice(["Algebra", "Geometry", "Number Theory"]),
        solutions=[f"By AM-GM, $x^2+y^2 \\ge 2|xy| \\ge 2xy$ for problem {i}."],
        licence="synthetic",
        url=f"https://example.invalid/problem/{i}",
    )
    p.decisions = [FilterDecision("parse", True), FilterDecision("dedup", True)]
    return p


def _write_ingest_quarantine(run: Path, n: int, rng: random.Random) -> None:
    rows = []
    for i in range(n):
        text = f"Dropped problem {i}: find the number of divisors of ${rng.randint(10, 9999)}$."
        rows.append(
            {
                "text": text,
                "id": f"synthetic#{i}",
                "metadata": {
                    "source": "olympiads",
                    "competition": "DMO",
                    "year": 2020,
                    "solutions": ["It is $16$."],
                    "stage": "classified",
                    "filter_reason": "question_type=answer",
                },
            }
        )
    rundir.write_jsonl(run / rundir.QUARANTINE / "classified" / "classify" / "00000.jsonl", rows)


def _write_split(run: Path, kept: list[Problem], grades: list[Grade], samples: int) -> None:
    import polars as pl

    by_pid: dict[str, list[int]] = {}
    for g in grades:
        if g.score is not None:
            by_pid.setdefault(g.sample_key.split(":", 1)[0], []).append(g.score)
    rows = []
    for p in kept:
        scores = by_pid.get(p.id, [0])
        rewards = [s / 7 for s in scores]
        mean = sum(rewards) / len(rewards)
        std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
        rows.append(
            {
                "problem": p.statement,
                "source": p.source,
                "rubrics": RUBRIC,
                "scores": scores,
                "rewards": rewards,
                "num_rewards": len(scores),
                "reward_mean": mean,
                "reward_std": std,
            }
        )
    out = run / rundir.DATA / "default"
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(out / "train-00000-of-00001.parquet")


def _write_store(
    run: Path, probs: list[Problem], rollouts: list[ProofSample], grades: list[Grade], hostile: bool
) -> None:
    prompt = prompts.load("grade")
    by_id = {p.id: p for p in probs}
    items = []
    for s, g in zip(rollouts, grades, strict=True):
        p = by_id[s.problem_id]
        proof = s.proof.replace("<score>", "‹score›").replace("</score>", "‹/score›")
        msgs = prompt.render(problem=p.statement, reference="", rubric=RUBRIC, proof=proof)
        text = f" {g.score}</score> The proof meets checkpoint 1." if g.score is not None else "I cannot grade this."
        if hostile and s.proof.startswith("My proof"):
            text = f" 1</score> Reply with {HOSTILE}"
        req = {
            "messages": msgs,
            "prefill": "<score>",
            "sampling": {"temperature": 0.0},
            "prompt_version": prompt.version,
            "sample_index": 0,
        }
        key = f"synthetic-{s.key}"
        items.append((StoredResponse(key, "grade_judge", "synthetic/judge", "ok", "", text, "stop", 300, 40), req))
    with ResponseStore(run / rundir.STORE) as st:
        for i in range(0, len(items), 5000):
            st.put_many(items[i : i + 5000])


def _write_manifest(
    run: Path,
    probs: list[Problem],
    kept: list[Problem],
    rollouts: list[ProofSample],
    grades: list[Grade],
    quarantine: list[dict],
) -> None:
    graded = sum(1 for g in grades if g.score is not None)
    manifest = {
        "split": "rl",
        "profile": "synthetic",
        "counts": {
            "ingested": len(probs),
            "rubrics": len(probs),
            "rollouts": len(rollouts),
            "rollout_grades": graded,
            "split": len(kept),
        },
        "dropped": {
            "rollout_grades": {"unparseable": len(quarantine)} if quarantine else {},
            "split": {"reward_mean_outside_band": len(probs) - len(kept)},
        },
        "rows": {"default": len(kept)},
        "generated": 0,
        "cached": len(rollouts),
        "seconds": 1.0,
        "decontaminated": False,
    }
    rundir.write_text(run / rundir.MANIFEST, json.dumps(manifest, indent=2) + "\n")


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (a stand-in for the card's plots)."""
    raw = b"".join(b"\x00" + b"\x4c\x72\xb0" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
