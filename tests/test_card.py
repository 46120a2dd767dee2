"""Dataset card: renders from the Jinja templates, passes the offline validation,
carries what a reader needs to rebuild the dataset, and its plots exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_splits import make_run

from fineproofs.cards import CardValidationError, validate_card
from fineproofs.cards.card import hub_license
from fineproofs.config import Profile, load_profile
from fineproofs.records import RL_FEATURES, SFT_FEATURES, SFTRow, features_of, sft_column_names


@pytest.fixture(scope="module")
def sft(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("card") / "sft", "sft")


@pytest.fixture(scope="module")
def rl(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("card") / "rl", "rl")


def _meta(text: str) -> dict:
    return yaml.safe_load(text.split("\n---\n", 1)[0][4:])


def test_sft_card_metadata_and_validation(sft):
    from huggingface_hub import DatasetCard

    text = (sft / "README.md").read_text()
    card = validate_card(text, expected_features={"default": SFT_FEATURES, "all": SFT_FEATURES}, root=sft)
    assert isinstance(card, DatasetCard)
    meta = _meta(text)
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert meta["task_categories"] == ["text-generation"] and "proofs" in meta["tags"]
    assert meta["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in meta["configs"]] == ["default", "all"]
    assert meta["configs"][0]["default"] is True
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    assert infos["default"]["splits"][0]["num_examples"] == 5 and infos["all"]["splits"][0]["num_examples"] == 7
    from datasets.info import DatasetInfosDict

    parsed = DatasetInfosDict.from_dataset_card_data(card.data)
    assert parsed["default"].features == SFT_FEATURES and parsed["all"].splits["train"].num_examples == 7


def test_sft_card_tells_how_to_rebuild(sft):
    text = (sft / "README.md").read_text()
    data = load_profile("paper-plus").model_dump()
    data["splits"]["sft"]["min_grade"] = 5  # make_run's selection policy
    prof = Profile.model_validate(data)
    # exact models, sampling, prompt versions, thresholds
    for role in ("teacher", "grader", "rubric_writer", "student", "judge"):
        assert f"`{getattr(prof, role).engine.model}`" in text
    t = prof.teacher.sampling
    assert (
        f"| teacher | `deepseek-ai/DeepSeek-Math-V2` | - | {t.temperature} | {t.top_p} | {t.max_tokens} | {t.seed} "
        f"| {prof.teacher_samples} |"
    ) in text
    from fineproofs import prompts

    for v in (prompts.load(n).version for n in ("distill", "grade", "rubric", "rollout")):
        assert f"`{v}`" in text
    assert "| grade ≥ `min_grade` | 5 | `grade_below_5` |" in text
    assert "`keep_incomplete: true`" in text and "`keep_truncated: false`" in text
    # counts dropped per stage with reasons (split stage from the policy)
    assert "| split | grade_below_5 | 2 |" in text and "| split | no_valid_grade | 1 |" in text
    assert "| decontaminated | contaminated | 2 |" in text
    # decontamination report
    assert "| IMO-ProofBench | 60 | 2 |" in text and "| ngram | 1 |" in text
    # licences, rebuild command, embedded profile equal to the one used
    assert "| demo_booklet | Apache-2.0 (demo) |" in text
    assert "fineproofs build --split sft --profile profile.yaml --benchmarks proofbench_v2.csv --output OUT" in text
    embedded = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    assert Profile.model_validate(yaml.safe_load(embedded)) == prof
    assert Profile.model_validate(yaml.safe_load((sft / "profile.yaml").read_text())) == prof
    # statistics + plots next to the card
    assert "| 7 (correct) | 3 | 42.9% |" in text and "| 5 (incomplete) | 2 | 28.6% |" in text
    for name in ("grade_histogram", "reward_mean", "problems_per_source", "problems_per_category"):
        assert f"](plots/{name}.png)" in text
        assert (sft / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rl_card(rl):
    text = (rl / "README.md").read_text()
    validate_card(text, expected_features={"default": RL_FEATURES}, root=rl)
    meta = _meta(text)
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    assert "`drop_never_solved: true`" in text and "[0.0, 1.0]" in text and "seed 42" in text
    assert "| split | never_solved | 1 |" in text and "| split | always_solved | 1 |" in text
    assert "teacher" not in re.search(r"### Provenance\n(.*?)\n\n", text, re.S).group(1)
    # RL rows carry no category: joined from problems/problems.jsonl
    assert "| Algebra | 1 | 1 |" in text


def test_model_named_columns_and_no_decontamination(tmp_path):
    rename = sft_column_names("models", "gpt-oss-20b", "qwen3-4b", 16)
    run = make_run(tmp_path / "named", "sft", rename=rename, decontam=False)
    text = (run / "README.md").read_text()
    feats = features_of(SFTRow, rename)
    validate_card(text, expected_features={"default": feats, "all": feats}, root=run)
    assert "| `gpt-oss-20b-grade` | int64 |" in text and "`qwen3-4b-reward@16`" in text
    assert "**Not decontaminated**" in text


def test_validation_rejects_broken_cards(sft):
    text = (sft / "README.md").read_text()
    ok = {"default": SFT_FEATURES, "all": SFT_FEATURES}
    cases = {
        "license 'apache2'": text.replace("license: apache-2.0", "license: apache2"),
        "size_categories": text.replace("- n<1K", "- tiny"),
        "exactly one config": text.replace("  default: true\n", ""),
        "not a Hub task id": text.replace("- text-generation", "- proof-writing"),
        "cannot parse": text.replace("pretty_name: ", "pretty_name: [", 1),
        "does not exist": text.replace("plots/reward_mean.png", "plots/missing.png"),
        "no file matches": text.replace("data/all/train-*.parquet", "data/every/train-*.parquet"),
    }
    for needle, bad in cases.items():
        with pytest.raises(CardValidationError, match=re.escape(needle)):
            validate_card(bad, expected_features=ok, root=sft)
    with pytest.raises(CardValidationError, match="features differ"):
        validate_card(text, expected_features={"default": RL_FEATURES}, root=sft)


def test_hub_license_mapping():
    assert hub_license({"a": "Apache-2.0 (fineproofs demo data)"})[0] == "apache-2.0"
    assert hub_license({"a": "CC BY 4.0", "b": "cc-by-4.0"})[0] == "cc-by-4.0"
    assert hub_license({"a": "CC-BY-4.0", "b": "MIT"})[0] == ["cc-by-4.0", "mit"]
    assert hub_license({"a": "CC BY-NC-SA 4.0"})[0] == "cc-by-nc-sa-4.0"
    assert hub_license({"a": "unknown", "b": "MIT"})[0] == "other"


def test_credentials_in_endpoints_are_redacted(tmp_path):
    from fineproofs.cards.card import CardFacts, write_card

    prof = load_profile("paper")
    data = prof.model_dump()
    data["teacher"]["engine"]["endpoints"] = ["https://alice:s3cr3t@llm.example.org/v1"]
    prof = Profile.model_validate(data)
    run = make_run(tmp_path / "r", "rl")
    write_card(
        run,
        prof,
        CardFacts(
            split="rl",
            rows={"default": 1},
            counts={},
            dropped={},
            decontaminated=False,
            decontam_report={},
            rubric_hash="",
            source_licences={"x": "MIT"},
            rename={},
            benchmark_args=[],
            limit=3,
        ),
    )
    for f in ("README.md", "profile.yaml", "card_data.json"):
        assert "s3cr3t" not in (run / f).read_text()
    assert "https://***@llm.example.org/v1" in (run / "profile.yaml").read_text()
    assert "--limit 3" in (run / "README.md").read_text()


def test_card_of_an_empty_split(tmp_path):
    """A build whose policy keeps nothing still gets a valid card (and a 0-row shard)."""
    run = make_run(tmp_path / "rl", "rl", n=3, min_reward_mean=0.9)
    text = (run / "README.md").read_text()
    validate_card(text, expected_features={"default": RL_FEATURES}, root=run)
    assert _meta(text)["dataset_info"][0]["splits"][0]["num_examples"] == 0
    assert "| split | reward_mean_outside_band | 1 |" in text
    assert (run / "plots" / "grade_histogram.png").exists()
