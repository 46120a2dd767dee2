"""End-to-end ingest on the bundled demo data (real datatrove executors)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fineproofs.config import Profile, load_profile
from fineproofs.pipelines.ingest import run_ingest

IMOBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "imobench"
BENCHES = [str(IMOBENCH / "proofbench_v2.csv"), str(IMOBENCH / "answerbench_v2.csv")]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    benches = BENCHES if all(Path(b).exists() for b in BENCHES) else []
    return out, benches, run_ingest(_profile(), out, benchmarks=benches)


def _profile():
    data = load_profile("embedded").model_dump()
    data["limit"] = None  # the embedded profile caps problems; look at all of them here
    return Profile.model_validate(data)


def test_counts_and_drops(demo_run):
    _, benches, r = demo_run
    assert list(r.counts) == ["read", "parsed", "clean", "classified", "dedup", "decontaminated"]
    assert r.counts["read"] == 42  # 12 wiki pages + 14 booklet problems + 16 hub rows
    assert r.dropped["parsed"] == {"empty_problem": 1, "redirect": 1}
    assert r.dropped["clean"] == {"no_solution": 2}  # wiki 2024/3 and NLO C4
    assert r.dropped["classified"] == {"question_type=answer": 2}  # hub lines 7 and 15
    assert r.dropped["dedup"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert r.counts["dedup"] == 34
    assert len(r.problems) == r.counts["decontaminated"]
    assert r.decontaminated == bool(benches)


def test_problem_records(demo_run):
    _, _, r = demo_run
    by_url = {p.url: p for p in r.problems}
    p = by_url["https://artofproblemsolving.com/wiki/index.php/2021_DMO_Problems/Problem_3"]
    assert (p.source, p.competition, p.year, p.category) == ("demo_wiki", "DMO", 2021, "Inequality")
    assert len(p.solutions) == 3  # two wiki solutions + the hub duplicate's, merged
    assert "<math>" not in p.statement and "$abc=1$" in p.statement
    assert p.licence == "Apache-2.0 (fineproofs demo data)"
    assert [d.step for d in p.decisions][:3] == ["parse", "markup", "latex"]
    dedup = next(d for d in p.decisions if d.step == "dedup")
    assert dedup.kept and "merged 1" in dedup.reason
    a1 = by_url["demo/booklet/nlo_2022_booklet.tex#A1"]  # kept over its near-duplicate hub row 10
    assert (a1.competition, a1.year, a1.category) == ("NLO", 2022, "Algebra") and len(a1.solutions) == 2
    a2 = by_url["demo/booklet/nlo_2022_booklet.tex#A2"]
    assert "(a)" in a2.statement and "(b)" in a2.statement
    assert any(d.reason == "multi_part" for d in a2.decisions)
    fe = next(p for p in r.problems if "f(x^2-y^2)" in p.statement)
    assert fe.question_type == "proof" and fe.answer.startswith("$f(x)=cx$")
    assert all("\\[" not in p.statement and "\\(" not in p.statement for p in r.problems)
    assert r.problems == sorted(r.problems, key=lambda p: p.id)


def test_outputs_and_quarantine(demo_run):
    out, _, r = demo_run
    assert r.problems_path == out / "problems" / "problems.jsonl"
    rows = [json.loads(x) for x in r.problems_path.read_text().splitlines()]
    assert [x["id"] for x in rows] == [p.id for p in r.problems]
    quarantined = [json.loads(x) for f in r.quarantine_dir.rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(quarantined) == r.counts["read"] - r.counts["decontaminated"]
    assert all(q["metadata"].get("filter_reason") for q in quarantined)


def test_rerun_reuses_output(demo_run):
    out, benches, r = demo_run
    again = run_ingest(_profile(), out, benchmarks=benches)
    assert [p.to_dict() for p in again.problems] == [p.to_dict() for p in r.problems]
    assert again.counts == r.counts


def test_limit_and_no_benchmark_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        r = run_ingest(load_profile("embedded"), tmp_path, benchmarks=[], limit=5)
    assert not r.decontaminated and len(r.problems) == 5
    assert "NOT decontaminated" in caplog.text
    assert r.decontam_report["flagged"] == []


def test_two_tasks_same_problems(tmp_path, demo_run):
    _, _, r = demo_run
    r2 = run_ingest(_profile(), tmp_path, benchmarks=[], tasks=2)
    assert [p.id for p in r2.problems] == [p.id for p in r.problems]


def test_ingest_cli(tmp_path):
    from click.testing import CliRunner

    from fineproofs.cli.ingest import ingest

    res = CliRunner().invoke(ingest, ["--profile", "embedded", "--output", str(tmp_path), "--limit", "3"])
    assert res.exit_code == 0, res.output
    assert "read 42 -> parsed 40" in res.output and "NOT decontaminated" in res.output
    assert len((tmp_path / "problems" / "problems.jsonl").read_text().splitlines()) == 3
    res = CliRunner().invoke(ingest, ["--profile", "nope", "--output", str(tmp_path)])
    assert res.exit_code != 0 and "unknown profile" in res.output


def test_broken_inputs_are_quarantined_not_fatal(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "rows.jsonl").write_bytes(
        b'{"problem": "Prove that $n^3-n$ is divisible by $6$ for every integer $n$.", "solution": "Three consecutive."}\n'
        b'{broken\n{"problem": "caf\xe9 au lait"}\n{"problem": ""}\n'
        + b'{"problem": "Prove that '
        + b"x" * 9000
        + b'.", "solution": "s"}\n'
        + b'{"problem": "Prove that $\\\\frac{a}{b$ is fine.", "solution": "s"}\n'
    )
    (src / "p.wiki").write_bytes(b"==Problem==\n\xff\xfe garbage")
    (src / "r.wiki").write_text("#REDIRECT [[Elsewhere]]")
    (src / "empty.tex").write_text("")
    data = _profile().model_dump()
    data["sources"]["paths"] = [str(src)]
    r = run_ingest(Profile.model_validate(data), tmp_path / "out", benchmarks=[])
    assert len(r.problems) == 1 and r.counts["read"] == 9
    assert r.dropped["parsed"] == {
        "empty_problem": 1,
        "malformed_json": 1,
        "no_problems_found": 1,
        "non_utf8": 2,
        "redirect": 1,
    }
    assert r.dropped["clean"] == {"broken_latex": 1, "too_long": 1}


def test_edited_source_file_is_reingested(tmp_path):
    src = tmp_path / "src.jsonl"
    row = {
        "problem": "Prove that the product of two odd integers is odd.",
        "solution": "Write (2a+1)(2b+1) = 2(2ab+a+b)+1.",
        "answer": "proof",
        "question_type": "proof",
        "problem_type": "Number Theory",
        "source": "mine",
    }
    src.write_text(json.dumps(row) + "\n")
    data = load_profile("embedded").model_dump()
    data["sources"]["paths"] = [str(src)]
    data["limit"] = None
    prof = Profile.model_validate(data)
    assert len(run_ingest(prof, tmp_path / "out", benchmarks=[]).problems) == 1
    row2 = dict(row, problem="Prove that the sum of two even integers is even.", solution="2a+2b = 2(a+b).")
    src.write_text(src.read_text() + json.dumps(row2) + "\n")
    assert len(run_ingest(prof, tmp_path / "out", benchmarks=[]).problems) == 2
