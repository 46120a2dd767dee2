"""Wiki crawler against a real loopback HTTP server (tests/data/ingest/wikiserver.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fineproofs.config import load_profile
from fineproofs.pipelines.ingest import run_ingest
from fineproofs.pipelines.sources.crawler import CrawlError, WikiCrawler

sys.path.insert(0, str(Path(__file__).parent / "data" / "ingest"))
from wikiserver import WikiServer

PAGES = Path(__file__).parent / "data" / "ingest" / "wiki"
CAT = "Category:Olympiad Problems"


@pytest.fixture()
def server():
    with WikiServer(PAGES) as s:
        yield s


def crawler(server, store, **kw):
    kw.setdefault("min_interval_s", 0.0)
    kw.setdefault("backoff_s", 0.01)
    return WikiCrawler(server.url + "/w/api.php", store, **kw)


def test_crawl_stores_pages_and_index(server, tmp_path):
    stats = crawler(server, tmp_path).crawl(category=CAT)
    assert stats.pages == 4 and not stats.skipped
    index = json.loads((tmp_path / "pages" / "crawl_index.json").read_text())
    entry = index["2019_TST_Problems__Problem_2.wiki"]
    assert entry["title"] == "2019 TST Problems/Problem 2"
    assert entry["url"] == server.url + "/w/index.php/2019_TST_Problems/Problem_2"
    assert (tmp_path / "pages" / "2019_TST_Problems__Problem_2.wiki").read_text().startswith("== Problem ==")
    assert len(list((tmp_path / "raw").glob("*.json"))) == 2 + 4  # two listing pages + four pages


def test_killed_crawl_resumes_without_refetching(server, tmp_path):
    c = crawler(server, tmp_path)
    calls = {"n": 0}
    real = c.fetch_page

    def dying(title, refresh=False):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the crawl is killed mid-way
        return real(title, refresh)

    c.fetch_page = dying
    with pytest.raises(KeyboardInterrupt):
        c.crawl(category=CAT)
    fetched_before = server.page_requests()
    assert len(fetched_before) == 2
    stats = crawler(server, tmp_path).crawl(category=CAT)
    after = server.page_requests()[len(fetched_before) :]
    assert stats.pages == 4 and len(after) == 2  # only the two pages it did not have
    assert not set(after) & set(fetched_before)
    assert stats.from_store >= 2 + 2  # listing + the two stored pages


def test_refresh_is_conditional(server, tmp_path):
    crawler(server, tmp_path).crawl(category=CAT)
    stats = crawler(server, tmp_path).crawl(category=CAT, refresh=True)
    assert stats.not_modified == 4 and stats.pages == 4
    assert [s for _, p, s in server.requests if "prop=revisions" in p][-4:] == [304] * 4


def test_retries_with_backoff_then_gives_up(server, tmp_path):
    server.fail["2019 TST Problems/Problem 1"] = [503, 429]
    server.fail["2019 TST Problems/Problem 2"] = [503] * 10
    c = crawler(server, tmp_path, max_retries=3)
    stats = c.crawl(category=CAT)
    assert stats.retries >= 2 + 3
    assert (
        "2019 TST Problems/Problem 2" in stats.skipped
        and "after 4 attempts" in stats.skipped["2019 TST Problems/Problem 2"]
    )
    assert stats.pages == 3


class FakeClock:
    """Stands in for the crawler's ``time`` module: ``sleep`` advances a counter instead of
    waiting, so the rate limiter is checked on exact numbers, whatever the machine's load."""

    def __init__(self, tick: float = 0.0):
        self.now = 1000.0
        self.tick = tick  # time that passes by itself at each reading (the crawler's own work)
        self.slept: list[float] = []

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s

    def time(self) -> float:
        return self.now


def _clocked(monkeypatch, c: WikiCrawler, clock: FakeClock) -> list[float]:
    """Patches the crawler's clock; returns the list of (fake) times each request was let through."""
    from fineproofs.pipelines.sources import crawler as mod

    monkeypatch.setattr(mod, "time", clock)
    sent: list[float] = []
    real = c._wait_turn

    def wait_turn(host):
        real(host)
        sent.append(clock.now)

    c._wait_turn = wait_turn
    return sent


def test_robots_are_honoured(server, tmp_path):
    blocked = WikiCrawler(server.url + "/private/api.php", tmp_path / "b", min_interval_s=0.0)
    stats = blocked.crawl(category=CAT)
    assert stats.pages == 0 and "robots.txt disallows" in next(iter(stats.skipped.values()))
    assert not any(p.startswith("/private/") for _, p, _ in server.requests)
    with pytest.raises(CrawlError):
        blocked.get({"action": "query"})


def test_rate_limit_spaces_every_request(server, tmp_path, monkeypatch):
    # powers of two: the fake clock's sums are exact, so the checks need no tolerance
    clock = FakeClock()
    c = crawler(server, tmp_path, min_interval_s=0.5)
    sent = _clocked(monkeypatch, c, clock)
    c.crawl(category=CAT)
    api = [p for _, p, _ in server.requests if p.startswith("/w/")]
    assert len(api) == 6 and len(sent) == 7  # robots.txt + 2 listings + 4 pages, all through the limiter
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps == [0.5] * 6  # never sooner than the interval, and no longer than needed
    assert clock.slept == [0.5] * 6


def test_rate_limit_does_not_wait_when_time_has_passed(server, tmp_path, monkeypatch):
    clock = FakeClock(tick=1.0)  # each request finds more than the interval gone by
    c = crawler(server, tmp_path, min_interval_s=0.5)
    sent = _clocked(monkeypatch, c, clock)
    c.crawl(category=CAT)
    assert len(sent) == 7 and clock.slept == []


def test_robots_crawl_delay_raises_the_interval(tmp_path, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"User-agent: *\nCrawl-delay: 2\n" if self.path == "/robots.txt" else b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        clock = FakeClock()
        c = WikiCrawler(f"http://127.0.0.1:{srv.server_port}/w/api.php", tmp_path, min_interval_s=0.25)
        sent = _clocked(monkeypatch, c, clock)
        c.get({"action": "query"})
        c.get({"action": "query", "x": "1"})
        assert c.min_interval_s == 2.0 and [b - a for a, b in zip(sent, sent[1:])] == [
            2.0,
            2.0,
        ]  # robots.txt first, then the delay
    finally:
        srv.shutdown()
        srv.server_close()


def test_crawled_store_ingests(server, tmp_path):
    crawler(server, tmp_path / "store").crawl(category=CAT)
    data = load_profile("embedded").model_dump()
    data["sources"]["paths"] = [str(tmp_path / "store" / "pages")]
    data["limit"] = None
    from fineproofs.config import Profile

    r = run_ingest(Profile.model_validate(data), tmp_path / "out", benchmarks=[])
    assert r.dropped["parsed"] == {"redirect": 1}
    assert r.dropped["clean"] == {"broken_latex": 1}
    urls = sorted(p.url for p in r.problems)
    assert urls == [
        server.url + "/w/index.php/2019_TST_Problems/Problem_1",
        server.url + "/w/index.php/2019_TST_Problems/Problem_2",
    ]
    p2 = next(p for p in r.problems if p.url.endswith("Problem_2"))
    assert (p2.source, p2.competition, p2.year, p2.category, len(p2.solutions)) == (
        "aops_wiki",
        "TST",
        2019,
        "Combinatorics",
        2,
    )
    p1 = next(p for p in r.problems if p.url.endswith("Problem_1"))
    assert len(p1.solutions) == 1 and "video" not in p1.solutions[0].lower()


def test_crawl_command_resumes(server, tmp_path):
    from click.testing import CliRunner

    from fineproofs.cli import cli

    args = [
        "crawl",
        "--api",
        server.url + "/w/api.php",
        "--output",
        str(tmp_path / "c"),
        "--category",
        CAT,
        "--min-interval",
        "0",
    ]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0 and "pages stored: 4" in first.output
    n = len(server.page_requests())
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0 and len(server.page_requests()) == n  # nothing fetched twice
    assert (tmp_path / "c" / "pages").is_dir()
