"""Any prompt can be replaced from the profile (``prompts:``) by a file, e.g. an original
QED-Nano prompt, or by another packaged prompt; its version goes into the store keys."""

from __future__ import annotations

import pytest

from fineproofs.config import ConfigError, GradingConfig, RoleConfig, load_profile
from fineproofs.judging import GradeJob, Grader
from fineproofs.records import Problem, ProofSample


def test_a_prompt_file_replaces_the_packaged_prompt(tmp_path):
    mine = tmp_path / "grade.md"
    mine.write_text("Grade this proof of {problem} against {rubric}:\n{proof}\nAnswer <score>N</score>.")
    prof = load_profile("embedded").with_overrides(prompts={"grade": str(mine)})
    grader = Grader("judge", RoleConfig(), GradingConfig(), generator=None, prompt_files=prof.prompts)
    assert grader.prompt.version.startswith("grade-file-")
    p = Problem(statement="Prove that 1 + 1 = 2.", source="t")
    msgs = grader.messages(GradeJob(p, None, ProofSample(p.id, "student", 0, "m", "", "By counting.", "stop")))
    assert msgs[-1]["content"].startswith("Grade this proof of Prove that 1 + 1 = 2.")
    assert "By counting." in msgs[-1]["content"]


def test_another_packaged_prompt_by_name():
    prof = load_profile("embedded")
    assert prof.prompts["rubric"] == "rubric_brief"
    from fineproofs import prompts

    assert prompts.pick("rubric", prof.prompts).version != prompts.load("rubric").version


def test_unknown_prompt_names_are_refused():
    with pytest.raises(ConfigError, match="not prompts of fineproofs"):
        load_profile("embedded").with_overrides(prompts={"gradee": "x.txt"})
