"""The viewer's human-grade menu starts empty and a save without a choice is refused (it
never records a 0); each problem page shows that problem's own rubric."""

from __future__ import annotations

import json
import re

import pytest
from test_viewer import first_pid, get, grade
from viewkit import write_run

from fineproofs.errors import DataError
from fineproofs.viewer import make_server
from fineproofs.viewer.human import HumanGrades, read_grades


@pytest.fixture()
def run(tmp_path):
    return write_run(tmp_path / "run", problems=12, samples=2)


def _menu(page: str, key: str) -> str:
    section = page.split(f'id="s-{key}"', 1)[1]
    return re.search(r'<select name="grade"[^>]*>(.*?)</select>', section, re.S).group(0)


def test_menu_starts_empty_and_an_unchosen_save_is_refused(run, tmp_path):
    srv = make_server(run, workdir=tmp_path / "w")
    try:
        pid = first_pid(srv)
        key = f"{pid}:student:0"
        menu = _menu(get(srv, f"/problem/{pid}"), key)
        assert " required" in menu.split(">", 1)[0]
        selected = re.findall(r'<option value="([^"]*)" selected', menu)
        assert selected == [""]  # nothing chosen yet
        resp, body = grade(srv, pid, key, "")
        assert resp.status == 400 and "no grade chosen" in body
        assert not (run / "human" / "grades.jsonl").exists()  # nothing recorded, certainly not a 0
        resp, _ = grade(srv, pid, key, 5)
        assert resp.status == 303
        menu = _menu(get(srv, f"/problem/{pid}"), key)
        assert re.findall(r'<option value="([^"]*)" selected', menu) == ["5"]
    finally:
        srv.shutdown()
    assert read_grades(run / "human" / "grades.jsonl")[key]["grade"] == 5


def test_blank_grade_is_refused_by_the_store(tmp_path):
    g = HumanGrades(tmp_path / "g.jsonl")
    for blank in ("", "  ", None):
        with pytest.raises(DataError, match="no grade chosen"):
            g.add("p:student:0", "p", "" if blank is None else blank)
    assert not (tmp_path / "g.jsonl").exists()


def test_each_problem_page_shows_its_own_rubric(run, tmp_path):
    stage = run / "stages" / "rubrics.jsonl"
    recs = [json.loads(x) for x in stage.read_text(encoding="utf-8").splitlines()]
    for i, r in enumerate(recs):  # a distinct rubric per problem, in reverse order of the problems file
        r["rubric"] = f"1. (3 points) Checkpoint of problem {r['problem_id']}.\n2. (4 points) Finish {i}."
    stage.write_text("".join(json.dumps(r) + "\n" for r in reversed(recs)), encoding="utf-8")
    srv = make_server(run, workdir=tmp_path / "w")
    try:
        for r in recs:
            page = get(srv, f"/problem/{r['problem_id']}")
            rubric = page.split('id="rubric"', 1)[1].split("</section>", 1)[0]
            assert f"Checkpoint of problem {r['problem_id']}." in rubric
            assert rubric.count("Checkpoint of problem") == 2  # the table and the text, both its own
    finally:
        srv.shutdown()
