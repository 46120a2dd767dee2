"""The card says what the build did: how scores were read (JSON answer or `<score>` tag),
which prompts were used (the profile's picks only), how rubrics were written, and a
rebuild line that installs something that exists (no `fineproofs==X` from an index)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from test_splits import make_run

from fineproofs import prompts
from fineproofs.cards.card import install_line, score_reading, used_prompts
from fineproofs.config import load_profile


def _prompt_line(text: str) -> set[str]:
    line = re.search(r"^Prompt versions: (.*)\.$", text, re.M).group(1)
    return set(re.findall(r"`([^`]+)`", line))


def test_embedded_card_lists_the_prompts_it_used_and_reads_json_scores(tmp_path):
    run = make_run(tmp_path / "rl", "rl", profile_name="embedded")
    text = (run / "README.md").read_text(encoding="utf-8")
    prof = load_profile("embedded")
    used = used_prompts("rl", prof)
    assert set(used) == {"rubric", "rubric_json", "rubric_json_retry", "rollout", "grade"}
    assert used["rubric"] == prompts.load("rubric_brief").version  # the profile's pick, not the packaged default
    assert _prompt_line(text) == set(used.values())
    assert prompts.load("distill").version not in _prompt_line(text)
    assert 'read from the judge\'s JSON answer `{"score": N' in text
    assert "parsed strictly" not in text
    assert "as JSON under a schema whose checkpoints can only add up to 7 (2 to 4 checkpoints" in text


def test_tag_parsing_profile_says_so(tmp_path):
    prof = load_profile("paper-plus")
    assert not prof.grading.structured and not prof.rubrics.structured
    assert "exactly one `<score>N</score>`" in score_reading(prof)
    assert "first `<score>N</score>`" in score_reading(load_profile("paper"))  # QED-Nano's reading
    run = make_run(tmp_path / "sft", "sft")  # paper-plus
    text = (run / "README.md").read_text(encoding="utf-8")
    assert "exactly one `<score>N</score>`" in text and "JSON answer" not in text.split("### Provenance")[0]
    used = used_prompts("sft", prof)
    assert {"rubric", "rubric_retry", "distill", "grade", "rollout"} <= set(used)
    assert "rubric_json" not in used and "rc_reason" not in used and "rubric_compact" not in used
    assert _prompt_line(text) == set(used.values())


def test_rebuild_line_installs_what_exists(tmp_path):
    run = make_run(tmp_path / "rl", "rl", profile_name="embedded")
    text = (run / "README.md").read_text(encoding="utf-8")
    rebuild = text.split("### Rebuild", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert "fineproofs==" not in rebuild
    line = install_line()
    assert line in rebuild
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (root / ".git").exists():
        assert head.stdout.strip() in line  # the exact commit this build ran
    else:
        assert line.startswith("pip install ./fineproofs-")
