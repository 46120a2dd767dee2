import datasets
import pytest

from fineproofs.records import (
    RL_FEATURES,
    SFT_FEATURES,
    Message,
    Problem,
    RLRow,
    SFTRow,
    features_of,
    normalise_statement,
    problem_id,
    sft_column_names,
    to_row,
)

# The published schemas of lm-provers/FineProofs-SFT and lm-provers/FineProofs-RL.
PUBLISHED_SFT = datasets.Features(
    {
        "problem": datasets.Value("string"),
        "reasoning_content": datasets.Value("string"),
        "proof": datasets.Value("string"),
        "category": datasets.Value("string"),
        "competition": datasets.Value("string"),
        "gemini-3-pro-grade": datasets.Value("int64"),
        "qwen3-4b-thinking-reward@128": datasets.Value("float64"),
        "source": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
    }
)
PUBLISHED_RL = datasets.Features(
    {
        "problem": datasets.Value("string"),
        "source": datasets.Value("string"),
        "rubrics": datasets.Value("string"),
        "scores": datasets.List(datasets.Value("int64")),
        "rewards": datasets.List(datasets.Value("float64")),
        "num_rewards": datasets.Value("int64"),
        "reward_mean": datasets.Value("float64"),
        "reward_std": datasets.Value("float64"),
    }
)


def test_features_match_published():
    assert SFT_FEATURES == PUBLISHED_SFT
    assert list(SFT_FEATURES) == list(PUBLISHED_SFT)
    assert RL_FEATURES == PUBLISHED_RL
    assert list(RL_FEATURES) == list(PUBLISHED_RL)


def test_model_column_naming_rule():
    rename = sft_column_names("models", "gpt-oss-20b", "smollm2-135m-instruct", 4)
    feats = features_of(SFTRow, rename)
    assert "gpt-oss-20b-grade" in feats and "smollm2-135m-instruct-reward@4" in feats
    assert "gemini-3-pro-grade" not in feats
    assert sft_column_names("published") == {}
    with pytest.raises(ValueError):
        sft_column_names("other")


def test_row_roundtrip_through_datasets():
    row = SFTRow(
        "P",
        "R",
        "proof",
        "Algebra",
        "DMO 2021",
        7,
        0.5,
        "demo",
        [Message(role="user", content="P"), Message(role="assistant", content="proof")],
    )
    ds = datasets.Dataset.from_list([to_row(row)], features=SFT_FEATURES)
    assert ds[0]["gemini-3-pro-grade"] == 7
    assert ds[0]["messages"][1] == {"role": "assistant", "content": "proof"}
    rl = RLRow("P", "demo", "1. (7 points) x", [7, 0], [1.0, 0.0], 2, 0.5, 0.5)
    ds = datasets.Dataset.from_list([to_row(rl)], features=RL_FEATURES)
    assert ds[0]["scores"] == [7, 0]


def test_problem_id_is_stable_under_formatting():
    a = "Prove that $a^2 \\ge 0$  for all real $a$."
    b = "prove that \\(a^2 \\ge 0\\) for all\nreal a."
    assert normalise_statement(a).split() != [] and problem_id(a) == Problem(statement=a, source="x").id
    assert problem_id("Prove that $a^2 \\ge 0$ for all real $a$.") == problem_id(a)
    assert problem_id(a) != problem_id("Prove that $a^3 \\ge 0$ for all real $a$.")
    assert len(problem_id(b)) == 16


def test_problem_dict_roundtrip():
    p = Problem(statement="Prove x.", source="s", solutions=["y"], year=2021)
    assert Problem.from_dict(p.to_dict()) == p
