"""Calibration against human grades: metrics on hand-made vectors, the bootstrap over
problems, `fineproofs calibrate` on the shared GradingBench rows with stand-in judges
whose error is known (an Engine subclass, and a loopback server through the CLI), and
the build-side thresholds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from faultproxy import FaultServer

from fineproofs.config import Profile, load_profile
from fineproofs.engines.base import Completion, Engine
from fineproofs.errors import ConfigError, DataError
from fineproofs.pipelines.calibration import (
    CalibrationMiss,
    calibrate,
    calibrate_roles,
    category_of,
    confusion,
    expand_path,
    load_rows,
    metrics,
)

GRADINGBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gradingbench"
GB_FILE = GRADINGBENCH / "gradingbench_200.jsonl"


@pytest.fixture(scope="module")
def gradingbench() -> Path:
    if not GB_FILE.exists():
        pytest.skip(f"GradingBench rows not found at {GRADINGBENCH}")
    return GB_FILE


# ----- metrics -----


def test_metrics_on_hand_made_vectors():
    human = [0, 1, 6, 7, 0, 7]
    judge = [0, 3, 6, 5, 1, None]  # the last row's judge failed: excluded, never a 0
    m = metrics(human, judge, ["a", "a", "b", "b", "c", "c"], bootstrap=0)
    assert (m["n"], m["n_rows"], m["n_failed"], m["n_problems"]) == (5, 6, 1, 3)
    assert m["mae"] == pytest.approx((0 + 2 + 0 + 2 + 1) / 5, abs=1e-4)
    assert m["bias"] == pytest.approx((0 + 2 + 0 - 2 + 1) / 5, abs=1e-4)
    assert m["pass_accuracy"] == pytest.approx(4 / 5)  # 7 vs 5 disagrees on pass
    assert m["exact_accuracy"] == pytest.approx(2 / 5, abs=1e-4)
    assert m["category_accuracy"] == pytest.approx(3 / 5)  # 1->3 partial, 7->5 almost, 0->1 partial
    assert m["parse_failure_rate"] == pytest.approx(1 / 6, abs=1e-4)
    # QWK by hand: observed sum of (h-j)^2 = 4+4+1 = 9 over 5 rows; expected from the marginals
    ph = {0: 2 / 5, 1: 1 / 5, 6: 1 / 5, 7: 1 / 5}
    pj = {0: 1 / 5, 3: 1 / 5, 6: 1 / 5, 5: 1 / 5, 1: 1 / 5}
    expected = sum(a * b * (i - j) ** 2 for i, a in ph.items() for j, b in pj.items())
    assert expected == pytest.approx(14.6, abs=1e-4)
    assert m["qwk"] == pytest.approx(1 - (9 / 5) / expected, abs=1e-4)  # 0.8767


def test_qwk_is_one_when_perfect_and_undefined_when_constant():
    assert metrics([0, 3, 7], [0, 3, 7], ["a", "b", "c"], bootstrap=0)["qwk"] == pytest.approx(1.0)
    m = metrics([7, 7], [7, 7], ["a", "b"], bootstrap=0)
    assert m["qwk"] is None and m["mae"] == 0.0  # no variance: kappa undefined, reported as null


def test_all_failed_reports_no_agreement_but_the_failure_rate():
    m = metrics([0, 7], [None, None], ["a", "b"], bootstrap=50)
    assert m["n"] == 0 and m["mae"] is None and m["parse_failure_rate"] == 1.0 and m["mae_ci"] is None


def test_bootstrap_is_over_problems_seeded_and_deterministic():
    human = [0, 7, 1, 6, 0, 7, 7, 0] * 3
    judge = [1, 7, 1, 3, 0, 4, 7, 2] * 3
    problems = [f"p{i % 6}" for i in range(len(human))]
    a = metrics(human, judge, problems, bootstrap=300, seed=3)
    b = metrics(human, judge, problems, bootstrap=300, seed=3)
    c = metrics(human, judge, problems, bootstrap=300, seed=4)
    assert a == b and a["mae_ci"] != c["mae_ci"]
    assert a["mae_ci"][0] <= a["mae"] <= a["mae_ci"][1]
    # one problem: every resample is the same problem, so the interval collapses (rows are not resampled)
    one = metrics(human, judge, ["p"] * len(human), bootstrap=200, seed=0)
    assert one["mae_ci"] == [one["mae"], one["mae"]] and one["qwk_ci"][0] == one["qwk_ci"][1]


def test_confusion_and_categories():
    t = confusion([0, 0, 7], [0, None, 5])
    assert t["rows"] == [0, 7] and t["columns"][-1] == "failed"
    assert t["counts"] == [[1, 0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0, 0, 0]]
    assert [category_of(g) for g in range(8)] == ["incorrect"] + ["partial"] * 3 + ["almost"] * 3 + ["correct"]


# ----- reading sets -----


def test_any_table_with_mapped_columns(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text(
        "task,statement,answer,points\nA,Prove x.,Because.,7\nA,Prove x.,No.,0\nB,Prove y.,Hm.,3\n"
        "B,Prove y.,bad,eleven\n",
        encoding="utf-8",
    )
    cols = {"problem_id": "task", "problem": "statement", "proof": "answer", "human_grade": "points"}
    rows = load_rows(f, cols)
    assert [(r.problem_id, r.human_grade, r.human_category) for r in rows] == [
        ("A", 7, "correct"),
        ("A", 0, "incorrect"),
        ("B", 3, "partial"),
    ]  # the bad row is left out
    assert [r.problem_id for r in load_rows(f, cols, limit=2)] == ["A", "B"]  # round-robin over problems
    with pytest.raises(DataError, match="no usable row"):
        load_rows(f)
    with pytest.raises(ConfigError, match="unknown field"):
        load_rows(f, {"grade": "points"})


def test_expand_path(monkeypatch, tmp_path):
    monkeypatch.setenv("FP_CAL", str(tmp_path))
    assert expand_path("${FP_CAL}/x.jsonl") == tmp_path / "x.jsonl"
    monkeypatch.delenv("FP_CAL")
    assert expand_path("${FP_CAL:-/data}/x.jsonl") == Path("/data/x.jsonl")
    with pytest.raises(ConfigError, match="FP_CAL"):
        expand_path("${FP_CAL}/x.jsonl")


# ----- stand-in judges with a known error -----


def _proof_of(messages) -> str:
    text = messages[-1]["content"]
    return text.split("<<<PROOF>>>\n", 1)[1].split("\n<<<END PROOF>>>", 1)[0]


def _noise(proof: str) -> int:
    """A fixed, known error per proof: -1, 0 or +1; every 10th proof gets no valid score."""
    return int(hashlib.sha256(proof.encode()).hexdigest()[:8], 16) % 10


def _standin_score(human: int, proof: str) -> int | None:
    k = _noise(proof)
    if k == 0:
        return None
    return min(7, max(0, human + (k % 3) - 1))


class StandInJudge(Engine):
    """Replies the human grade plus a fixed noise, looked up from the proof it is shown."""

    model_id = "stand-in"
    revision = "test"

    def __init__(self, grades: dict[str, int]):
        self.grades = grades
        self.calls = 0

    def generate(self, requests):
        for i, r in enumerate(requests):
            self.calls += r.n
            proof = _proof_of(r.messages)
            s = _standin_score(self.grades[proof], proof)
            text = "I cannot tell." if s is None else f"<score>{s}</score> ok"
            # the returned text is prefill + continuation: a "<score>" prefill is continued, not repeated
            yield i, [Completion(text if text.startswith(r.prefill) else r.prefill + text)] * r.n


class OnePool:
    def __init__(self, engine):
        self.engine = engine

    def get(self, cfg):
        return self.engine

    def close(self):
        pass


def _gb_rows(path: Path):
    from fineproofs.judging import neutralise

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()], neutralise


def test_standin_error_is_recovered_and_rerun_is_free(gradingbench, tmp_path):
    rows, neutralise = _gb_rows(gradingbench)
    engine = StandInJudge({neutralise(r["proof"]): r["human_grade"] for r in rows})
    prof = load_profile("embedded")
    res = calibrate(prof, "judge", gradingbench, tmp_path, pool=OnePool(engine), progress=False, bootstrap=500)
    expect = [(r["human_grade"], _standin_score(r["human_grade"], neutralise(r["proof"]))) for r in rows]
    valid = [(h, j) for h, j in expect if j is not None]
    true_mae = sum(abs(h - j) for h, j in valid) / len(valid)
    true_fail = 1 - len(valid) / len(rows)
    assert res["n_rows"] == 200 and res["n"] == len(valid) and res["n_problems"] == 30
    assert res["mae"] == pytest.approx(true_mae, abs=1e-3) and res["mae_ci"][0] <= true_mae <= res["mae_ci"][1]
    assert res["parse_failure_rate"] == pytest.approx(true_fail, abs=1e-3)
    assert res["parse_failure_rate_ci"][0] <= true_fail <= res["parse_failure_rate_ci"][1]
    assert 0.3 < res["mae"] < 1.0 and res["qwk"] > 0.85 and res["pass_accuracy"] > 0.85
    assert res["categories_from"] == "set" and res["failure_reasons"] == {"unparseable": res["n_failed"]}
    assert sum(sum(c) for c in res["confusion"]["counts"]) == 200
    assert res["worst"] and abs(res["worst"][0]["gap"]) == 1
    calls = engine.calls
    again = calibrate(prof, "judge", gradingbench, tmp_path, pool=OnePool(engine), progress=False, bootstrap=500)
    assert engine.calls == calls and again["requests"]["generated"] == 0  # re-run: zero requests
    assert {k: v for k, v in again.items() if k != "requests"} == {k: v for k, v in res.items() if k != "requests"}
    for suffix in (".json", ".md", ".rows.jsonl"):
        assert (tmp_path / "calibration" / f"judge{suffix}").is_file()
    assert "quadratic weighted kappa" in (tmp_path / "calibration" / "judge.md").read_text(encoding="utf-8")


def _http_profile(tmp_path: Path, url: str, **grading) -> Path:
    data = load_profile("embedded").model_dump()
    data["judge"]["engine"] = {"kind": "http", "model": "fake-model", "endpoints": [url], "max_retries": 0}
    data["grading"].update(grading)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_cli_json_last_line_and_zero_requests_on_rerun(gradingbench, tmp_path):
    from fineproofs.cli.calibrate import calibrate as cli  # the command itself (registered as `fineproofs calibrate`)

    rows, neutralise = _gb_rows(gradingbench)
    grades = {neutralise(r["proof"]): r["human_grade"] for r in rows}

    def reply(messages, prefill, seed, index):
        s = _standin_score(grades[_proof_of(messages)], _proof_of(messages))
        return "no idea" if s is None else f"<score>{s}</score>"

    with FaultServer(reply_fn=reply) as srv:
        prof = _http_profile(tmp_path, srv.url, prefill_score_tag=False)
        args = [
            "--profile",
            str(prof),
            "--role",
            "judge",
            "--against",
            str(gradingbench),
            "--output",
            str(tmp_path / "out"),
            "--limit",
            "40",
            "--max-chars",  # the embedded profile's limit (short proofs only) is not what this test measures
            "1000000",
            "--json",
            "--no-progress",
        ]
        first = CliRunner().invoke(cli, args)
        assert first.exit_code == 0, first.output
        sent = len(srv.received)
        second = CliRunner().invoke(cli, args)
        assert second.exit_code == 0 and len(srv.received) == sent  # re-run: nothing sent
    fig = json.loads(first.output.strip().splitlines()[-1])
    assert {"n", "mae", "pass_accuracy", "qwk", "bias", "parse_failure_rate"} <= fig.keys()
    assert fig["n_rows"] == 40 and fig["n_problems"] == 30 and 0 < fig["mae"] < 1.0
    assert json.loads(second.output.strip().splitlines()[-1])["requests"] == {
        "generated": 0,
        "cached": 40 * 1 + fig["n_failed"] * 2,
    }


def test_cli_maps_columns_and_reports_bad_ones(tmp_path):
    from fineproofs.cli.calibrate import calibrate as cli  # the command itself (registered as `fineproofs calibrate`)

    f = tmp_path / "set.jsonl"
    f.write_text(json.dumps({"p": "Prove 1=1.", "a": "Trivial.", "g": 7}) + "\n", encoding="utf-8")
    bad = CliRunner().invoke(cli, ["--against", str(f), "--column", "nonsense", "--json"])
    assert bad.exit_code == 2 and "FIELD=COLUMN" in bad.output
    with FaultServer(reply_fn=lambda *a: "<score>6</score>") as srv:
        prof = _http_profile(tmp_path, srv.url, prefill_score_tag=False)
        res = CliRunner().invoke(
            cli,
            [
                "-p",
                str(prof),
                "--against",
                str(f),
                "-o",
                str(tmp_path / "o"),
                "--column",
                "problem=p",
                "--column",
                "proof=a",
                "--column",
                "human_grade=g",
                "--json",
                "--no-progress",
            ],
        )
    assert res.exit_code == 0, res.output
    fig = json.loads(res.output.strip().splitlines()[-1])
    assert (fig["n"], fig["mae"], fig["bias"], fig["pass_accuracy"]) == (1, 1.0, -1.0, 1.0)


# ----- in the build -----


def _with_calibration(tmp_path: Path, url: str, **cal) -> Profile:
    data = yaml.safe_load(_http_profile(tmp_path, url, prefill_score_tag=False).read_text(encoding="utf-8"))
    data["grading"]["calibration"] = {"judge": cal}
    return Profile.model_validate(data)


def test_threshold_miss_stops_the_build_side_function(gradingbench, tmp_path):
    with FaultServer(reply_fn=lambda *a: "<score>7</score>") as srv:  # always 7: MAE 4 on GradingBench rows
        prof = _with_calibration(tmp_path, srv.url, file=str(gradingbench), limit=30, max_mae=1.5, min_qwk=0.2)
        with pytest.raises(CalibrationMiss, match=r"judge: mae .* exceeds max_mae 1.5; qwk .* is below min_qwk 0.2"):
            calibrate_roles(prof, tmp_path / "run", progress=False)
        report = json.loads((tmp_path / "run" / "calibration" / "judge.json").read_text(encoding="utf-8"))
        assert report["missed"] and report["thresholds"] == {"max_mae": 1.5, "min_qwk": 0.2}
        sent = len(srv.received)
        figures = calibrate_roles(prof, tmp_path / "run", progress=False, continue_on_miss=True)
        assert len(srv.received) == sent  # the figures come from the store
    assert figures["judge"]["mae"] > 1.5 and figures["judge"]["missed"] and "confusion" not in figures["judge"]
    json.dumps(figures)  # what the build writes into build.json["calibration"]


def test_roles_without_thresholds_report_and_missing_files_are_skipped(gradingbench, tmp_path):
    with FaultServer(reply_fn=lambda *a: "<score>0</score>") as srv:
        prof = _with_calibration(tmp_path, srv.url, file=str(gradingbench), limit=10)
        figures = calibrate_roles(prof, tmp_path / "run", progress=False)
        assert figures["judge"]["n"] == 10 and figures["judge"]["missed"] == []
        gone = _with_calibration(tmp_path, srv.url, file=str(tmp_path / "nope.jsonl"))
        assert calibrate_roles(gone, tmp_path / "run2", progress=False)["judge"]["skipped"]
        strict = _with_calibration(tmp_path, srv.url, file=str(tmp_path / "nope.jsonl"), max_mae=1.0)
        with pytest.raises(ConfigError, match="not a file"):
            calibrate_roles(strict, tmp_path / "run3", progress=False)
    assert calibrate_roles(load_profile("paper"), tmp_path / "run4") == {}  # nothing configured


def test_cli_applies_the_profile_settings_as_the_build_does(gradingbench, tmp_path):
    """One calibration: `fineproofs calibrate` with no --against/--limit/--max-chars reads the
    profile's grading.calibration.judge, so it grades the rows the build grades and reports
    the same figures."""
    from fineproofs.cli.calibrate import calibrate as cli

    with FaultServer(reply_fn=lambda *a: "<score>3</score>") as srv:
        prof = _with_calibration(tmp_path, srv.url, file=str(gradingbench), limit=5, max_chars=4000, bootstrap=50)
        built = calibrate_roles(prof, tmp_path / "run", progress=False)["judge"]
        path = tmp_path / "cal.yaml"
        path.write_text(yaml.safe_dump(prof.model_dump()), encoding="utf-8")
        args = ["--profile", str(path), "--output", str(tmp_path / "cli"), "--json", "--no-progress"]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        longer = CliRunner().invoke(cli, [*args[:3], str(tmp_path / "cli2"), "--max-chars", "100000", "--json"])
    fig = json.loads(res.output.strip().splitlines()[-1])
    keys = ("n_rows", "n", "mae", "qwk", "bias", "pass_accuracy", "limit", "max_chars", "mae_ci")
    assert {k: fig[k] for k in keys} == {k: built[k] for k in keys}
    assert fig["n_rows"] == 5 and fig["max_chars"] == 4000
    rows = [json.loads(x) for x in (tmp_path / "cli" / "calibration" / "judge.rows.jsonl").read_text().splitlines()]
    by_id = {json.loads(x)["id"]: json.loads(x) for x in gradingbench.read_text(encoding="utf-8").splitlines()}
    assert all(len(by_id[r["id"]]["proof"]) <= 4000 for r in rows)
    assert json.loads(longer.output.strip().splitlines()[-1])["max_chars"] == 100000  # a flag still overrides


def test_figures_never_print_negative_zero():
    from fineproofs.pipelines.calibration import fmt_figure, markdown, one_line

    assert fmt_figure(-0.0) == fmt_figure(-0.0004) == "0.000" and fmt_figure(-0.0004, pct=True) == "0.0 %"
    assert fmt_figure(-0.28) == "-0.280" and fmt_figure(0.5, pct=True) == "50.0 %"
    res = metrics([3, 3, 4, 4], [3, 3, 4, 4], ["a", "b", "c", "d"], bootstrap=20)
    res.update(role="judge", model="m", n_problems=4, scale="rubric", prompt_version="v", structured=True,
               against="f", categories_from="grade bins", bootstrap=20, seed=0, confusion=confusion([3], [3]),
               worst=[])  # fmt: skip
    assert "-0.000" not in markdown(res) and "| mean bias (judge − human) | 0.000" in markdown(res)
    line = one_line({**res, "max_chars": 4000})
    assert line.startswith("4 of 4 proofs graded, proofs over 4000 chars left out: MAE 0.000, QWK 1.000")
    assert one_line({"skipped": "calibration file x not found"}) == "skipped (calibration file x not found)"


def test_card_shows_each_roles_calibration(tmp_path):
    from test_splits import make_run

    from fineproofs.cards import validate_card
    from fineproofs.cards.card import CardFacts, write_card
    from fineproofs.records import RL_FEATURES

    run = make_run(tmp_path / "rl", "rl")
    assert "No judging role was calibrated" in (run / "README.md").read_text(encoding="utf-8")
    figures = metrics([0, 1, 6, 7, 0, 7], [0, 3, 6, 5, 1, None], ["a", "a", "b", "b", "c", "c"], bootstrap=100)
    judge = {
        "role": "judge",
        "model": "stand-in",
        "against": "/data/gradingbench_200.jsonl",
        **figures,
        "thresholds": {"max_mae": 0.5},
        "missed": ["mae 1.000 exceeds max_mae 0.5"],
    }
    (run / "build.json").write_text(
        json.dumps(
            {
                "calibration": {
                    "judge": judge,
                    "grader": {"role": "grader", "skipped": "calibration file /x.jsonl not found"},
                }
            }
        )
    )
    calibration = json.loads((run / "build.json").read_text())["calibration"]  # a card fact, as build.json holds it
    facts = CardFacts(split="rl", calibration=calibration)
    text = write_card(run, load_profile("paper-plus"), facts).read_text(encoding="utf-8")
    validate_card(text, expected_features={"default": RL_FEATURES}, root=run)
    row = next(line for line in text.splitlines() if line.startswith("| judge | stand-in |"))
    assert "`gradingbench_200.jsonl`" in row and "| 6 (3) |" in row and f"{figures['mae']:.2f} [" in row
    assert "80.0 % [" in row and "**missed**: mae 1.000 exceeds max_mae 0.5" in row
    assert "| grader | - | calibration file /x.jsonl not found |" in text
    assert "a grade needs 1 of" in text
