"""End to end: `fineproofs build --split rl|sft` with the real embedded model.

Runs the CLI on a few bundled problems, checks the output loads with
``datasets.load_dataset`` with the exact FineProofs features, and that a second
run on the same directory performs zero generations and writes the same rows.
"""

import json

import datasets
import pytest
from click.testing import CliRunner

from fineproofs.cli import cli
from fineproofs.records import RL_FEATURES, SFT_FEATURES

pytestmark = pytest.mark.slow


def _args(tmp_path, split, imobench, *extra) -> list[str]:
    out = tmp_path / split
    return [
        "build",
        "--split",
        split,
        "--limit",
        "2",
        "--output",
        str(out),
        "--no-progress",
        "--profile",
        str(tmp_path / "tiny.yaml"),
        "--benchmarks",
        str(imobench / "proofbench_v2.csv"),
        *extra,
    ]


def _build(tmp_path, split, imobench, *extra):
    out = tmp_path / split
    args = _args(tmp_path, split, imobench, *extra)
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, res.output


@pytest.fixture
def tiny_profile(tmp_path):
    """The embedded profile with short generations, so the test stays fast on 2 cores."""
    import yaml

    from fineproofs.config import load_profile

    data = load_profile("embedded").model_dump()
    for role in ("teacher", "student", "rubric_writer"):
        data[role]["sampling"]["max_tokens"] = 48
    # the structured rubric's longest document must fit: 2 short checkpoints, no lists (~60 tokens)
    data["rubrics"].update(max_checkpoints=2, description_chars=16, max_list_items=0)
    data["rubric_writer"]["sampling"]["max_tokens"] = 80
    data["student_samples"] = 2
    data["teacher_samples"] = 2
    data["grading"]["calibration"]["judge"]["limit"] = 2  # the judge measured against human grades, briefly
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(data))


def _rows(out, config):
    ds = datasets.load_dataset(str(out), config, split="train")
    return ds, ds.to_list()


@pytest.mark.parametrize("split", ["rl", "sft"])
def test_build_end_to_end_and_rerun_generates_nothing(tmp_path, tiny_profile, imobench, split, monkeypatch):
    out, output = _build(tmp_path, split, imobench)
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["generated"] > 0
    assert manifest["decontaminated"] is True
    assert (out / "README.md").read_text().startswith("---\n")
    print(f"\nrendered card: {out / 'README.md'} (plots in {out / 'plots'})")
    assert "rubrics" in manifest["counts"]
    cal = manifest["calibration"]["judge"]  # calibrated first, against GradingBench's human grades
    assert cal.get("skipped") or (cal["n"] == 2 and "mae" in cal and "parse_failure_rate" in cal)
    configs = ["default"] if split == "rl" else ["default", "all"]
    first = {}
    for c in configs:
        ds, rows = _rows(out, c)
        assert ds.features == (RL_FEATURES if split == "rl" else SFT_FEATURES)
        first[c] = rows
    for row in first["default"]:
        if split == "rl":
            assert row["num_rewards"] == len(row["scores"]) == len(row["rewards"])
            assert all(0 <= s <= 7 for s in row["scores"])
            assert row["rewards"] == pytest.approx([s / 7 for s in row["scores"]])
        else:
            assert 0 <= row["gemini-3-pro-grade"] <= 7
            assert row["messages"][0] == {"role": "user", "content": row["problem"]}

    # second run: nothing generated, same rows
    out2, output2 = _build(tmp_path, split, imobench)
    manifest2 = json.loads((out2 / "build.json").read_text())
    assert manifest2["generated"] == 0, output2
    assert manifest2["cached"] == manifest["generated"] + manifest["cached"]
    for c in configs:
        assert _rows(out, c)[1] == first[c]

    if split == "rl":  # --push-to an unreachable Hub: one clear line, no traceback, the build kept
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenJustForTheTest")
        args = _args(tmp_path, split, imobench, "--push-to", "org/x")
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1, res.output
        assert isinstance(res.exception, SystemExit)
        assert "Traceback" not in res.output and "hf_NotARealToken" not in res.output
        assert res.output.strip().splitlines()[-1].startswith("fineproofs: ")
        assert _rows(out, "default")[1] == first["default"]


def test_paper_profile_fails_clearly_without_servers(tmp_path):
    res = CliRunner().invoke(cli, ["build", "--profile", "paper", "--limit", "1", "--output", str(tmp_path / "p")])
    assert res.exit_code != 0
    assert any(m in res.output for m in ("gemini-3-pro", "DeepSeek-Math-V2", "gpt-oss-20b", "Qwen3-4B"))
    assert "vllm serve" in res.output
