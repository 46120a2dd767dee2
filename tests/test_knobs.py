"""Every knob explains itself: each field of every profile and training-config section has a
description, and the field reference, `profiles show --help-fields`, `train check
--help-fields`, docs/config.md and the validation errors all read it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import fineproofs.config as profile_config
import fineproofs.train.config as train_config
from fineproofs.cli import cli
from fineproofs.config import ConfigError, Profile, load_profile
from fineproofs.knobs import closest, find, fix_it, knobs
from fineproofs.train.config import STAGE_MODELS, load_stage_config

ROOT = Path(__file__).resolve().parents[1]


def _sections():
    for mod in (profile_config, train_config):
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == mod.__name__:
                yield f"{mod.__name__}.{name}", obj


def test_every_field_of_every_section_has_a_description():
    sections = dict(_sections())
    assert len(sections) >= 25  # the profile's sections and the training configs'
    missing = [
        f"{where}.{field}"
        for where, model in sections.items()
        for field, info in model.model_fields.items()
        if not (info.description and len(info.description.strip()) >= 10)
    ]
    assert not missing, f"fields without a description: {missing}"


def test_every_reachable_key_is_described():
    for model in (Profile, *STAGE_MODELS.values()):
        undescribed = [k.key for k in knobs(model) if not k.description]
        assert not undescribed, (model.__name__, undescribed)


def test_keys_are_found_by_the_spelling_a_config_uses():
    assert find(Profile, "grading.judges").default == "1"
    assert find(Profile, "grading.calibration.judge.max_mae").key == "grading.calibration.<judge|grader>.max_mae"
    assert find(Profile, "sources.paths.0.source.preset").key == "sources.paths.<i>.preset"  # a union tag in the loc
    assert find(Profile, "screener.engine.model") is not None  # an optional section
    assert find(Profile, "grading.nope") is None
    assert closest(Profile, "grading.judgess").key == "grading.judges"
    assert closest(STAGE_MODELS["rl"], "update.los").key == "update.loss"


def test_errors_say_what_a_key_means(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("extends: embedded\ngrading:\n  judgess: 3\n  max_attempts: 0\n")
    with pytest.raises(ConfigError) as e:
        load_profile(str(bad))
    text = str(e.value)
    assert "did you mean `grading.judges`? Ensemble size" in text
    assert "grading.max_attempts: Input should be greater than 0" in text
    assert find(Profile, "grading.max_attempts").description in text
    with pytest.raises(ConfigError, match=r"unknown profile setting 'teacher.engine.modle': did you mean"):
        load_profile("embedded").with_overrides(**{"teacher.engine.modle": "x"})
    with pytest.raises(ConfigError, match="did you mean `rc.turns`"):
        load_stage_config("rc", "embedded", ["rc.turn=2"])
    assert fix_it(Profile, "zzzzzz", unknown=True) == ""


def test_profiles_fields_and_show_help_fields():
    run = CliRunner().invoke
    res = run(cli, ["profiles", "fields", "grading.score_parse"])
    assert res.exit_code == 0, res.output
    assert "grading.score_parse  ('strict' | 'first', default 'strict')" in res.output
    assert find(Profile, "grading.score_parse").description in res.output
    res = run(cli, ["profiles", "fields", "--stage", "eval", "rc_turns"])
    assert "rc_turns  (int, default 3; >= 1)" in res.output
    assert run(cli, ["profiles", "fields", "nope"]).exit_code != 0
    res = run(cli, ["profiles", "show", "paper", "--help-fields"])
    assert res.exit_code == 0, res.output
    judge = load_profile("paper").judge.engine.model
    assert f"judge.engine.model  (str, = {judge!r})" in res.output


def test_train_check_help_fields():
    res = CliRunner().invoke(cli, ["train", "check", "--stage", "eval", "-c", "embedded", "--help-fields"])
    assert res.exit_code == 0, res.output
    assert "samples  (int, = 1; >= 1)" in res.output and "Proofs per problem per mode" in res.output


def test_docs_config_reference_is_current():
    res = CliRunner().invoke(cli, ["profiles", "fields", "--markdown"])
    assert res.exit_code == 0, res.output
    assert (ROOT / "docs" / "config.md").read_text() == res.output, (
        "docs/config.md is stale: run `fineproofs profiles fields --markdown > docs/config.md`"
    )
