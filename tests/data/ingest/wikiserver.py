"""A loopback MediaWiki-API server for crawler tests (stdlib http.server in a thread).

It serves ``robots.txt`` and ``/w/api.php`` (``list=categorymembers`` paginated two
titles per response, ``prop=revisions`` with ETag / If-None-Match → 304) from the
``.wiki`` files of a folder, and can inject faults: ``fail[title] = [503, 429]``
makes the next requests for that page fail with those statuses first. Every request
is logged in ``requests`` as (time, path, status). Not a MediaWiki implementation:
just enough of the protocol for the crawler.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROBOTS = "User-agent: *\nDisallow: /private/\n"


class WikiServer:
    def __init__(self, pages_dir: Path, category: str = "Category:Olympiad Problems"):
        self.pages = {
            p.stem.replace("__", "/").replace("_", " "): p.read_text() for p in sorted(Path(pages_dir).glob("*.wiki"))
        }
        self.category = category
        self.fail: dict[str, list[int]] = {}
        self.requests: list[tuple[float, str, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body=b"", headers=None):
                server.requests.append((time.monotonic(), self.path, status))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/robots.txt":
                    return self._send(200, ROBOTS.encode(), {"Content-Type": "text/plain"})
                if url.path not in ("/w/api.php", "/private/api.php"):
                    return self._send(404)
                if q.get("list") == "categorymembers":
                    titles = sorted(server.pages)
                    start = int(q.get("cmcontinue", 0))
                    data = {"query": {"categorymembers": [{"title": t} for t in titles[start : start + 2]]}}
                    if start + 2 < len(titles):
                        data["continue"] = {"cmcontinue": str(start + 2)}
                    return self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})
                title = q.get("titles", "")
                if fails := server.fail.get(title):
                    code = fails.pop(0)
                    return self._send(code, b"busy", {"Retry-After": "0"})
                if title not in server.pages:
                    body = json.dumps({"query": {"pages": [{"title": title, "missing": True}]}}).encode()
                    return self._send(200, body)
                text = server.pages[title]
                etag = '"' + hashlib.md5(text.encode()).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag:
                    return self._send(304, b"", {"ETag": etag})
                rev = {"revid": int(etag[1:9], 16) % 100000, "slots": {"main": {"content": text}}}
                body = json.dumps({"query": {"pages": [{"title": title, "revisions": [rev]}]}}).encode()
                return self._send(200, body, {"ETag": etag, "Content-Type": "application/json"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()

    def page_requests(self) -> list[str]:
        return [p for _, p, _ in self.requests if "prop=revisions" in p]
