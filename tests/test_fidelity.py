"""The fidelity table: docs/fidelity.md is what `fineproofs profiles fidelity` prints,
every knob resolves in the bundled paper profiles and configs, and the card of a build
lists every option where its profile differs from the release."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fineproofs.cards.fidelity import KNOBS, differences
from fineproofs.cli import cli
from fineproofs.config import bundled_profiles, load_profile

ROOT = Path(__file__).resolve().parents[1]


def test_docs_table_is_current():
    res = CliRunner().invoke(cli, ["profiles", "fidelity"])
    assert res.exit_code == 0, res.output
    assert (ROOT / "docs" / "fidelity.md").read_text() == res.output, (
        "docs/fidelity.md is stale: run `fineproofs profiles fidelity > docs/fidelity.md`"
    )


def test_every_knob_resolves_in_the_paper_profiles():
    for name in (n for n in bundled_profiles() if n.startswith("paper")):
        prof = load_profile(name)
        for k in KNOBS:
            k.value(prof)  # raises if the knob does not exist


def test_train_knobs_resolve():
    from fineproofs.train.fidelity import KNOBS as TRAIN
    from fineproofs.train.fidelity import paper_configs

    cfgs = paper_configs()
    for k in TRAIN:
        k.value(cfgs)


def test_differences_name_the_release_value():
    prof = load_profile("embedded")
    diffs = {d["key"]: d for d in differences(prof)}
    assert diffs["student_samples"]["release"] == 128 and diffs["student_samples"]["ours"] == prof.student_samples
    assert "judge.engine.model" in diffs
