"""`fineproofs stats RUN_DIR`: the card's tables in the terminal (rich), computed with
polars from the shards and card_data.json."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from test_splits import make_run

from fineproofs.cards.stats import card_tables, distributions


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("stats")
    return {"sft": make_run(base / "sft", "sft"), "rl": make_run(base / "rl", "rl")}


def test_distributions(runs):
    d = distributions(runs["sft"])
    assert d["split"] == "sft" and d["rows"] == {"default": 5, "all": 7}
    assert d["grades"] == {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 2, 6: 2, 7: 3}
    assert sum(d["reward_bins"]) == 4 and d["reward_missing"] == 1
    assert d["sources"] == [("demo_booklet", 3, 3), ("aops_wiki", 2, 4)]
    r = distributions(runs["rl"])
    assert r["split"] == "rl" and r["rows"] == {"default": 1}
    assert r["grades"][0] == 1 and r["grades"][7] == 1 and r["reward_bins"][5] == 1
    assert r["categories"] == [("Algebra", 1, 1)]  # joined from problems/problems.jsonl


def _cells(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│┃|─━┏┓┗┛┡┩└┘┌┐├┤┼╇╈╋┬┴╭╮╰╯]", " ", text))


@pytest.mark.parametrize("split", ["sft", "rl"])
def test_stats_command_shows_the_card_tables(runs, split):
    from fineproofs.cli import cli

    run = runs[split]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["stats", str(run)])
    assert res.exit_code == 0, res.output
    out = _cells(res.output)
    card = (run / "README.md").read_text()
    for t in card_tables(run).values():
        if not t["rows"]:
            continue
        assert t["title"] in res.output
        assert t["title"] in card or t["key"] in ("rows", "provenance", "licences", "decontam_methods")
        for row in t["rows"]:
            # the same row is in the card's markdown table and in the terminal table
            assert "| " + " | ".join(str(x) for x in row) + " |" in card or t["key"] == "rows"
            assert " ".join(str(x).replace("`", "") for x in row) in out, (t["key"], row)


def test_stats_on_a_dir_without_split(tmp_path):
    from fineproofs.cli import cli

    res = CliRunner().invoke(cli, ["stats", str(tmp_path)])
    assert res.exit_code != 0 and "no split found" in res.output
