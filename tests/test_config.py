import pytest

from fineproofs import prompts
from fineproofs.config import ConfigError, bundled_profiles, load_profile


def test_bundled_profiles_validate():
    assert {"embedded", "paper"} <= set(bundled_profiles())
    emb = load_profile("embedded")
    assert emb.teacher.engine.kind == "transformers" and emb.teacher.engine.model == "embedded"
    paper = load_profile("paper")
    assert paper.student_samples == 128
    assert paper.teacher.engine.model == "deepseek-ai/DeepSeek-Math-V2"
    assert paper.judge.engine.model == "openai/gpt-oss-20b"
    assert paper.student.engine.model_label == "qwen3-4b-thinking"


def test_bad_profile_says_what_is_wrong(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nteacher: {engine: {kind: http}}\n")
    with pytest.raises(ConfigError) as e:
        load_profile(str(f))
    msg = str(e.value)
    assert "teacher.engine" in msg and "endpoints" in msg
    assert "student" in msg  # missing roles are named
    with pytest.raises(ConfigError, match="unknown profile"):
        load_profile("nope")
    f.write_text("name: x\nlimit: -3\n")
    with pytest.raises(ConfigError, match="limit"):
        load_profile(str(f))


def test_prompts_are_versioned_and_render():
    v = prompts.versions()
    assert v["grade"].startswith("grade-v") and v["rubric"].startswith("rubric-v")
    msgs = prompts.load("grade").render(problem="$x^{2}$", reference="", rubric="R", proof="P")
    assert msgs[0]["role"] == "system" and "$x^{2}$" in msgs[1]["content"]
    with pytest.raises(KeyError):
        prompts.load("grade").render(problem="x")
