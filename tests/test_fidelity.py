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


def test_every_training_setting_has_a_row():
    """Each setting of the paper training and evaluation configs is a fidelity knob (release
    value, ours, why) or a named operational setting: nothing goes unlisted."""
    import yaml

    from fineproofs.train.config import config_text
    from fineproofs.train.fidelity import KNOBS as TRAIN
    from fineproofs.train.fidelity import operational

    def leaves(d, pre=""):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from leaves(v, f"{pre}{k}.")
            else:
                yield f"{pre}{k}"

    listed = {k.key for k in TRAIN}
    missing = []
    for stage in ("sft", "rl", "rc", "eval"):
        data = yaml.safe_load(config_text(stage, "paper")[0])
        missing += [f"{stage}:{key}" for key in leaves(data) if f"{stage}:{key}" not in listed]
    assert [m for m in missing if operational(m) is None] == []
    # the knobs that differ from the release say why
    from fineproofs.train.fidelity import differs, paper_configs

    cfgs = paper_configs()
    assert all(k.why for k in TRAIN if differs(k, cfgs))


def test_a_run_records_where_it_differs_from_the_release():
    from fineproofs.train.config import load_stage_config
    from fineproofs.train.fidelity import run_differences

    paper = {d["key"]: d for d in run_differences("rl", load_stage_config("rl", "paper", []))}
    assert "rl:update.generation_lag" in paper and paper["rl:update.generation_lag"]["why"]
    assert "rl:trainer.epsilon" not in paper  # as released
    lag0 = run_differences("rl", load_stage_config("rl", "paper", ["update.generation_lag=0", "update.loss=trl"]))
    keys = {d["key"] for d in lag0}
    assert {"rl:update.loss", "rl:update.generation_lag"} <= keys
    rc = {d["key"] for d in run_differences("rc", load_stage_config("rc", "paper", ["grading.score_parse=strict"]))}
    assert "rc:grading.score_parse" in rc
