"""fineproofs view over HTTP on loopback: pages, search and filters, human grading that
survives a restart, escaping of hostile content, and a run directory left untouched."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from viewkit import write_run

from fineproofs.errors import DataError
from fineproofs.viewer import export_calibration, latex, make_server
from fineproofs.viewer.human import CALIBRATION_COLUMNS, read_grades


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("view") / "run", problems=120, samples=4, hostile=True)


@pytest.fixture
def server(run, tmp_path):
    srv = make_server(run, workdir=tmp_path)
    yield srv
    srv.shutdown()


def request(srv, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    u = urlsplit(srv.url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    data = urlencode(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
    con.request(method, path, body=data, headers={**hdrs, **(headers or {})})
    resp = con.getresponse()
    text = resp.read().decode("utf-8", "replace")
    con.close()
    return resp, text


def get(srv, path: str) -> str:
    resp, text = request(srv, "GET", path)
    assert resp.status == 200, (path, resp.status, text[:500])
    return text


def first_pid(srv, **filters) -> str:
    page = get(srv, "/problems?" + urlencode(filters))
    m = re.search(r'href="/problem/([0-9a-z]+)"', page)
    assert m, page[:2000]
    return m.group(1)


def total(page: str) -> int:
    return int(re.search(r'id="total">(\d+)<', page).group(1))


# ---------------------------------------------------------------------- pages


def test_overview_shows_the_manifest_numbers_and_plots(server, run):
    manifest = json.loads((run / "build.json").read_text())
    page = get(server, "/")
    for stage, n in manifest["counts"].items():
        assert f"<td>{stage}</td><td>{n}</td>" in page
    for stage, reasons in manifest["dropped"].items():
        for reason, n in reasons.items():
            assert f"<td>{stage}</td><td>{reason}</td><td>{n}</td>" in page
    assert 'src="/plots/grade_histogram.png"' in page
    resp, _ = request(server, "GET", "/plots/grade_histogram.png")
    assert resp.status == 200 and resp.getheader("Content-Type") == "image/png"


def test_problem_list_search_filters_and_pages(server):
    everything = get(server, "/problems")
    assert total(everything) == 120 + 12  # problems + those dropped at ingest
    assert "page 1 of 3" in everything
    page2 = get(server, "/problems?page=2")
    assert first_pid(server) != re.search(r'href="/problem/([0-9a-z]+)"', page2).group(1)
    one = get(server, "/problems?q=Problem+17%3A")
    assert total(one) == 1 and "Problem 17:" in one
    assert total(get(server, "/problems?q=no+such+words+anywhere")) == 0
    kept, dropped = total(get(server, "/problems?status=kept")), total(get(server, "/problems?status=dropped"))
    assert kept == 80 and dropped == 40 + 12
    usamo = get(server, "/problems?competition=USAMO")
    assert 0 < total(usamo) < 120 and "BMO" not in re.sub(r"<select.*?</select>", "", usamo, flags=re.S)
    for band in ("0", "0.25-0.5", "1", "none"):
        get(server, f"/problems?reward={band}")
    assert total(get(server, "/problems?reward=none")) == 12  # ingest drops have no rollouts
    g7 = total(get(server, "/problems?grade=7"))
    assert 0 < g7 < 120
    assert total(get(server, "/problems?grade=failed")) > 0
    assert total(get(server, "/problems?q=%25")) == 0  # LIKE wildcards are literal


def test_problem_page_shows_everything_about_a_problem(server):
    pid = first_pid(server, q="Problem 5:")
    page = get(server, f"/problem/{pid}")
    assert "Problem 5:" in page and "Reference solution" in page and "By AM-GM" in page
    # structured rubric: checkpoints, zero credit, deductions
    assert "Main solution" in page and "Sets up" in page and "Zero credit" in page and "Deductions" in page
    assert page.count('class="sample') == 4
    assert "finish: <b>" in page and "tokens: 120 prompt" in page
    assert re.search(r'<details class="reasoning"><summary>', page)  # folded: no "open" attribute
    assert "thinking about" in page
    assert "judge's replies (1)" in page
    assert "The proof meets checkpoint 1." in page or "I cannot grade" in page
    assert "<sup>2</sup>" in page and 'class="math"' in page  # math rendered


def test_quarantine_lists_every_dropped_item(server, run):
    n = sum(1 for p in (run / "quarantine").rglob("*.jsonl") for line in p.read_text().splitlines() if line)
    page = get(server, "/quarantine")
    assert total(page) == n
    classified = get(server, "/quarantine?stage=classified")
    assert total(classified) == 12 and "question_type=answer" in classified
    assert total(get(server, "/quarantine?stage=rollout_grades")) == n - 12


def test_unknown_pages_and_files_are_404(server):
    for path in ("/problem/nope", "/nope", "/plots/..%2Fbuild.json", "/static/../index.py", "/plots/x.txt"):
        resp, _ = request(server, "GET", path)
        assert resp.status == 404, path


# ---------------------------------------------------------------------- safety


def test_hostile_content_is_escaped_and_csp_is_strict(server):
    resp, page = request(server, "GET", "/problem/hostile0000000000")
    assert resp.status == 200
    csp = resp.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script source at all
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert not re.search(r"<\s*(script|img|iframe)", page, re.I) and "<b>bold?</b>" not in page
    assert page.count("&lt;script&gt;alert(") == 3  # statement, proof and the judge's reply, as text
    assert "score_tag" in page  # the injection flag is shown
    listing = get(server, "/problems?q=Hostile")
    assert total(listing) == 1 and "<script" not in listing.lower()


def test_hostile_host_header_and_forged_forms_are_refused(server):
    resp, _ = request(server, "GET", "/", headers={"Host": "evil.example:80"})
    assert resp.status == 400
    key = "hostile0000000000:student:0"
    resp, _ = request(server, "POST", "/grade", {"sample_key": key, "grade": "7", "token": "guess"})
    assert resp.status == 403


def test_latex_renders_readably_and_escapes():
    html = latex.render(r"Let $\frac{a}{b} \le \sqrt{x_1^2}$ and $$\sum_{i=1}^n i$$ with \$5 <b>.")
    assert 'class="frac"' in html and "≤" in html and "√" in html and "<sub>" in html and "∑" in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "<script" not in latex.render("$<script>alert(1)</script>$").lower()
    assert latex.render("$" + "{" * 500 + "x" + "}" * 500 + "$")  # deep nesting does not crash
    assert "\\foo" in latex.render(r"$\foo{x}$")  # unknown commands stay visible


# ---------------------------------------------------------------------- human grading


def grade(srv, pid: str, key: str, value, note: str = ""):
    page = get(srv, f"/problem/{pid}")
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    return request(srv, "POST", "/grade", {"token": token, "sample_key": key, "grade": str(value), "note": note})


def test_human_grade_survives_a_restart_and_exports(run, tmp_path):
    srv = make_server(run, workdir=tmp_path)
    pid = first_pid(srv, q="Problem 3:")
    key = f"{pid}:student:1"
    resp, _ = grade(srv, pid, key, 6, "nice <b>note</b>")
    assert resp.status == 303 and resp.getheader("Location").startswith(f"/problem/{pid}")
    resp, _ = grade(srv, pid, key, 9)
    assert resp.status == 400
    srv.shutdown()

    grades = read_grades(run / "human" / "grades.jsonl")
    assert grades[key]["grade"] == 6 and grades[key]["note"] == "nice <b>note</b>"
    srv = make_server(run, workdir=tmp_path)
    try:
        page = get(srv, f"/problem/{pid}")
        assert "human 6/7" in page and "nice &lt;b&gt;note&lt;/b&gt;" in page
        assert total(get(srv, "/problems?human=graded")) >= 1
        export = get(srv, "/export/calibration.jsonl")
        rows = [json.loads(x) for x in export.splitlines()]
        row = next(r for r in rows if r["id"] == key)
        assert set(CALIBRATION_COLUMNS) <= set(row) and row["human_grade"] == 6
        assert row["problem"].startswith("Problem 3:") and "Sets up" in row["rubric"]
        human = get(srv, "/human")
        judge = row["judge_grade"]
        if judge is not None and judge != 6:
            assert key in human.split('id="disagreements"')[1].split("</table>")[0]
    finally:
        srv.shutdown()
    out = tmp_path / "calib.jsonl"
    assert export_calibration(run, out) == len(rows)


def test_disagreements_list_judge_vs_human(run, tmp_path):
    srv = make_server(run, workdir=tmp_path)
    try:
        page = get(srv, "/problems?grade=0")
        pid = re.search(r'href="/problem/([0-9a-z]+)"', page).group(1)
        ppage = get(srv, f"/problem/{pid}")
        key = next(
            k
            for k in re.findall(r'id="s-([^"]+)"', ppage)
            if re.search(rf'id="s-{re.escape(k)}">\s*<h3>[^<]*<span class="grade g0"', ppage)
        )
        assert grade(srv, pid, key, 7)[0].status == 303
        human = get(srv, "/human")
        table = human.split('id="disagreements"')[1].split("</table>")[0]
        assert key in table and "+7" in table
        assert total(get(srv, "/problems?human=disagree")) >= 1
    finally:
        srv.shutdown()


# ---------------------------------------------------------------------- read-only


def snapshot(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and "human" not in p.relative_to(run).parts
    }


def test_the_viewer_never_writes_what_the_build_wrote(tmp_path):
    run = write_run(tmp_path / "ro", problems=10, samples=2)
    before = snapshot(run)
    srv = make_server(run, workdir=tmp_path / "w")
    try:
        pid = first_pid(srv)
        for path in ("/", "/problems", f"/problem/{pid}", "/quarantine", "/human", "/export/calibration.jsonl"):
            get(srv, path)
        assert grade(srv, pid, f"{pid}:student:0", 3)[0].status == 303
    finally:
        srv.shutdown()
    assert snapshot(run) == before
    assert sorted(p.name for p in (run / "human").iterdir()) == ["grades.jsonl"]
    assert not list((tmp_path / "w").iterdir())  # the temporary index is removed


def test_a_directory_without_build_output_is_refused(tmp_path):
    with pytest.raises(DataError, match="no build output"):
        make_server(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        make_server(tmp_path / "missing")


def test_binds_to_loopback_by_default(server):
    assert server.url.startswith("http://127.0.0.1:")
