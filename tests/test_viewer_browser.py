"""fineproofs view in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by Selenium 4 with explicit paths: nothing is downloaded). Pages load, a search
filters, a human grade survives a server restart, a proof with ``<script>`` shows as
text; the problem page's screenshot goes to the test's temporary directory, or to
``docs/viewer-problem.png`` (the README's) with ``FINEPROOFS_UPDATE_SCREENSHOT=1``, so a
test run leaves the checkout as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from viewkit import write_run

from fineproofs.viewer import make_server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "viewer-problem.png"

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no system Chromium: apt-get install chromium chromium-driver (.ci/run does)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("browser") / "run", problems=60, samples=3, hostile=True)


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1700",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def server(run, tmp_path):
    srv = make_server(run, workdir=tmp_path)
    yield srv
    srv.shutdown()


def wait(driver, cond, timeout: float = 10):
    return WebDriverWait(driver, timeout).until(cond)


def test_pages_load_and_search_filters(browser, server):
    browser.get(server.url)
    assert "Overview" in browser.title
    assert browser.find_element(By.ID, "counts").text.count("\n") >= 3
    browser.find_element(By.LINK_TEXT, "Problems").click()
    wait(browser, EC.presence_of_element_located((By.ID, "problems")))
    assert browser.find_element(By.ID, "total").text == str(60 + 6)
    box = browser.find_element(By.ID, "q")
    box.send_keys("Problem 17:")
    browser.find_element(By.ID, "search").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "total"), "1"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#problems td.stmt a")
    assert len(rows) == 1 and rows[0].text.startswith("Problem 17:")
    rows[0].click()
    wait(browser, EC.presence_of_element_located((By.ID, "statement")))
    assert browser.find_elements(By.CSS_SELECTOR, "#rubric table.checkpoints")
    reasoning = browser.find_element(By.CSS_SELECTOR, "details.reasoning")
    assert reasoning.get_attribute("open") is None  # folded by default
    browser.find_element(By.LINK_TEXT, "Quarantine").click()
    wait(browser, EC.presence_of_element_located((By.ID, "quarantine")))
    assert int(browser.find_element(By.ID, "total").text) > 0


def test_problem_page_screenshot(browser, server, tmp_path):
    srv_pid = server.viewer.index.db().execute("SELECT pid FROM problems WHERE statement LIKE 'Problem 4:%'").fetchone()
    browser.get(f"{server.url}problem/{srv_pid[0]}")
    wait(browser, EC.presence_of_element_located((By.ID, "statement")))
    browser.find_elements(By.CSS_SELECTOR, "details.replies summary")[0].click()
    shot = DOCS_SCREENSHOT if os.environ.get("FINEPROOFS_UPDATE_SCREENSHOT") == "1" else tmp_path / "problem.png"
    shot.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_human_grade_survives_a_restart(browser, run, tmp_path):
    srv = make_server(run, workdir=tmp_path)
    port = srv.server_address[1]
    pid = srv.viewer.index.db().execute("SELECT pid FROM problems WHERE statement LIKE 'Problem 9:%'").fetchone()[0]
    try:
        browser.get(f"{srv.url}problem/{pid}")
        form = browser.find_elements(By.CSS_SELECTOR, "form.human")[1]
        Select(form.find_element(By.NAME, "grade")).select_by_value("5")
        form.find_element(By.NAME, "note").send_keys("checked by hand")
        form.find_element(By.CSS_SELECTOR, "button.human-save").click()
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "section.sample.saved")))
    finally:
        srv.shutdown()
    srv = make_server(run, port=port, workdir=tmp_path)  # a new process would read the same file
    try:
        browser.get(f"{srv.url}problem/{pid}")
        section = browser.find_element(By.ID, f"s-{pid}:student:1")
        assert "human 5/7" in section.find_element(By.TAG_NAME, "h3").text
        assert Select(section.find_element(By.NAME, "grade")).first_selected_option.text == "5"
        assert section.find_element(By.NAME, "note").get_attribute("value") == "checked by hand"
        browser.get(f"{srv.url}human")
        assert f"{pid}:student:1" in browser.find_element(By.ID, "human-grades").text
    finally:
        srv.shutdown()


def test_a_proof_with_script_shows_as_text(browser, server):
    browser.get(f"{server.url}problem/hostile0000000000")
    wait(browser, EC.presence_of_element_located((By.ID, "statement")))
    try:
        browser.switch_to.alert.dismiss()
        pytest.fail("a script from the run directory executed")
    except NoAlertPresentException:
        pass
    proof = browser.find_elements(By.CSS_SELECTOR, ".proof")[0].text
    assert '<script>alert("pwned")</script>' in proof and "<img src=x" in proof
    assert '<script>alert("pwned")</script>' in browser.find_element(By.ID, "statement").text
    injected = browser.execute_script(
        "return document.querySelectorAll('main script, main img').length"
        " + [...document.querySelectorAll('main b')].filter(e => e.textContent === 'bold?').length"
    )
    assert injected == 0
