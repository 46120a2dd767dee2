"""Polite MediaWiki crawler (AoPS wiki and any MediaWiki) with a raw response store.

- pages are listed and fetched through the MediaWiki API (``list=categorymembers`` /
  ``list=allpages`` with continuation, ``prop=revisions`` for wikitext);
- ``robots.txt`` is honoured (disallowed URLs are skipped and reported; its
  ``Crawl-delay`` raises the per-host interval);
- at most one request per ``min_interval_s`` per host;
- retries with exponential backoff on 429 / 5xx / timeouts / connection errors,
  honouring ``Retry-After``;
- every response is kept in ``store/raw/`` (written atomically) before it is used,
  so a killed crawl resumes without re-fetching anything it already has; with
  ``refresh=True`` stored pages are re-fetched conditionally (``If-None-Match`` /
  ``If-Modified-Since``; a 304 keeps the stored copy);
- pages land in ``store/pages/<title>.wiki`` with ``crawl_index.json`` (title, wiki
  URL, revision), which ingest reads like any wiki folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

from fineproofs import rundir
from fineproofs.errors import DataError
from fineproofs.pipelines.sources.reader import CRAWL_INDEX

log = logging.getLogger(__name__)
USER_AGENT = "fineproofs-crawler/0.1 (olympiad dataset builder; contact: see fineproofs README)"
RETRY_STATUS = {429, 500, 502, 503, 504}


class CrawlError(DataError):
    """A request that failed after the retry budget (or was refused)."""


@dataclass
class CrawlStats:
    requested: int = 0  # HTTP requests sent
    from_store: int = 0  # responses served from the raw store
    not_modified: int = 0
    retries: int = 0
    pages: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # title/url -> reason


def _filename(title: str) -> str:
    return title.replace("/", "__").replace(" ", "_") + ".wiki"


class WikiCrawler:
    """Crawl one MediaWiki API endpoint into ``store_dir``."""

    def __init__(
        self,
        api_url: str,
        store_dir: str | Path,
        *,
        min_interval_s: float = 1.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
        user_agent: str = USER_AGENT,
        wiki_base_url: str | None = None,
    ):
        self.api_url = api_url
        self.store = Path(store_dir)
        self.min_interval_s = min_interval_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        parts = urllib.parse.urlsplit(api_url)
        self.host = parts.netloc
        self.wiki_base_url = (
            wiki_base_url or f"{parts.scheme}://{parts.netloc}{parts.path.rsplit('/', 1)[0]}/index.php/"
        )
        self.stats = CrawlStats()
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        (self.store / "raw").mkdir(parents=True, exist_ok=True)
        (self.store / "pages").mkdir(parents=True, exist_ok=True)

    # -- politeness -------------------------------------------------------------------
    def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser | None:
        p = urllib.parse.urlsplit(url)
        key = f"{p.scheme}://{p.netloc}"
        if key not in self._robots:
            rp = urllib.robotparser.RobotFileParser(key + "/robots.txt")
            try:
                status, _, body = self._http(key + "/robots.txt", {}, check_robots=False)
                rp.parse(body.decode("utf-8", "replace").splitlines() if status == 200 else [])
            except CrawlError:
                rp.parse([])  # unreachable robots.txt: allowed (RFC 9309 treats 4xx as allow-all)
            self._robots[key] = rp
            delay = rp.crawl_delay(self.user_agent)
            if delay:
                self.min_interval_s = max(self.min_interval_s, float(delay))
        return self._robots[key]

    def _wait_turn(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._last.get(host, -1e9) + self.min_interval_s - now
            if wait > 0:
                time.sleep(wait)
            self._last[host] = time.monotonic()

    def _http(self, url: str, headers: dict, check_robots: bool = True) -> tuple[int, dict, bytes]:
        if check_robots:
            rp = self._robots_for(url)
            if rp is not None and not rp.can_fetch(self.user_agent, url):
                raise CrawlError(f"robots.txt disallows {url}")
        host = urllib.parse.urlsplit(url).netloc
        for attempt in range(self.max_retries + 1):
            self._wait_turn(host)
            req = urllib.request.Request(url, headers={"User-Agent": self.user_agent, **headers})
            self.stats.requested += 1
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return r.status, dict(r.headers), r.read()
            except urllib.error.HTTPError as e:
                if e.code == 304:
                    return 304, dict(e.headers), b""
                if e.code not in RETRY_STATUS:
                    return e.code, dict(e.headers), e.read()
                retry_after = e.headers.get("Retry-After")
                err = f"HTTP {e.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                err = f"{type(e).__name__}: {e}"
            if attempt == self.max_retries:
                raise CrawlError(f"{url}: {err} after {attempt + 1} attempts")
            self.stats.retries += 1
            delay = self.backoff_s * 2**attempt
            if retry_after:
                try:
                    delay = max(delay, float(retry_after))
                except ValueError:
                    try:
                        delay = max(delay, parsedate_to_datetime(retry_after).timestamp() - time.time())
                    except (TypeError, ValueError):
                        pass
            log.info("retrying %s in %.2fs (%s)", url, delay, err)
            time.sleep(max(0.0, delay))
        raise AssertionError("unreachable")

    # -- raw store ----------------------------------------------------------------------
    def _raw_path(self, url: str) -> Path:
        return self.store / "raw" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")

    def get(self, params: dict, refresh: bool = False) -> dict:
        """GET the API with ``params``; the response comes from the store when present."""
        url = self.api_url + "?" + urllib.parse.urlencode(sorted({**params, "format": "json"}.items()))
        path = self._raw_path(url)
        stored = json.loads(path.read_text()) if path.exists() else None
        if stored and not refresh:
            self.stats.from_store += 1
            return json.loads(stored["body"])
        headers = {}
        if stored:
            if etag := stored["headers"].get("ETag"):
                headers["If-None-Match"] = etag
            if lm := stored["headers"].get("Last-Modified"):
                headers["If-Modified-Since"] = lm
        status, resp_headers, body = self._http(url, headers)
        if status == 304 and stored:
            self.stats.not_modified += 1
            return json.loads(stored["body"])
        if status != 200:
            raise CrawlError(f"{url}: HTTP {status}")
        text = body.decode("utf-8", "replace")
        json.loads(text)  # only valid JSON goes into the store
        keep = {k: v for k, v in resp_headers.items() if k in ("ETag", "Last-Modified", "Content-Type")}
        rundir.write_text(
            path, json.dumps({"url": url, "status": status, "headers": keep, "body": text, "fetched_at": time.time()})
        )
        return json.loads(text)

    # -- MediaWiki ------------------------------------------------------------------------
    def list_titles(
        self, category: str | None = None, prefix: str | None = None, limit: int | None = None, refresh: bool = False
    ) -> list[str]:
        """Page titles of a category (``Category:...``) or with a title prefix."""
        if category:
            base = {"action": "query", "list": "categorymembers", "cmtitle": category, "cmlimit": "500"}
            key, cont_key = "categorymembers", "cmcontinue"
        else:
            base = {"action": "query", "list": "allpages", "apprefix": prefix or "", "aplimit": "500"}
            key, cont_key = "allpages", "apcontinue"
        titles: list[str] = []
        cont: dict = {}
        while True:
            data = self.get({**base, **cont}, refresh=refresh)
            titles += [m["title"] for m in data.get("query", {}).get(key, [])]
            if limit and len(titles) >= limit:
                return titles[:limit]
            nxt = data.get("continue", {})
            if cont_key not in nxt:
                return titles
            cont = {cont_key: nxt[cont_key]}

    def fetch_page(self, title: str, refresh: bool = False) -> tuple[str, int | None] | None:
        """``(wikitext, revision id)`` of a page, or None if it does not exist."""
        data = self.get(
            {
                "action": "query",
                "prop": "revisions",
                "rvprop": "content|ids",
                "rvslots": "main",
                "titles": title,
                "formatversion": "2",
            },
            refresh=refresh,
        )
        pages = data.get("query", {}).get("pages", [])
        if not pages or pages[0].get("missing") or not pages[0].get("revisions"):
            return None
        rev = pages[0]["revisions"][0]
        content = rev.get("slots", {}).get("main", {}).get("content", rev.get("content", ""))
        return content, rev.get("revid")

    def crawl(
        self,
        titles: list[str] | None = None,
        category: str | None = None,
        prefix: str | None = None,
        limit: int | None = None,
        refresh: bool = False,
    ) -> CrawlStats:
        """Fetch pages into the store; failures are recorded in ``stats.skipped``."""
        if titles is None:
            try:
                titles = self.list_titles(category, prefix, limit, refresh=refresh)
            except CrawlError as e:
                self.stats.skipped[category or prefix or self.api_url] = str(e)
                return self.stats
        index_path = self.store / "pages" / CRAWL_INDEX
        index = json.loads(index_path.read_text()) if index_path.exists() else {}
        try:
            for title in titles:
                try:
                    page = self.fetch_page(title, refresh=refresh)
                except (CrawlError, ValueError) as e:
                    self.stats.skipped[title] = str(e)
                    continue
                if page is None:
                    self.stats.skipped[title] = "missing"
                    continue
                name = _filename(title)
                (self.store / "pages" / name).write_text(page[0])
                index[name] = {
                    "title": title,
                    "url": self.wiki_base_url + urllib.parse.quote(title.replace(" ", "_"), safe="/_()',-."),
                    "revid": page[1],
                    "api": self.api_url,
                }
                self.stats.pages += 1
        finally:
            rundir.write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
        return self.stats
