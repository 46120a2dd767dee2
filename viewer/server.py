"""The HTTP side of ``fineproofs view``: routes, headers, the server object.

Framework: the standard library's :class:`http.server.ThreadingHTTPServer`. The app is
a dozen GET routes and one POST, rendered with Jinja2 (already a core dependency) with
autoescaping on; a web framework would add a dependency and an ASGI server for
nothing the viewer needs. Work per request is bounded by the index
(:mod:`fineproofs.viewer.index`), so threads are enough.

Safety:

- every value reaches the page through Jinja2's autoescape or :mod:`fineproofs.viewer.latex`
  (which escapes every character it does not itself produce);
- a strict Content-Security-Policy: no script at all, styles and images from the
  viewer only, forms post only to the viewer, no framing;
- bound to 127.0.0.1 unless told otherwise; on loopback the ``Host`` header must
  name a loopback address (DNS-rebinding guard);
- the one write, a human grade, needs the per-server token embedded in the page's
  form (a cross-site form cannot know it) and goes to ``RUN_DIR/human/grades.jsonl`` only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jinja2
from markupsafe import Markup

from fineproofs import rundir
from fineproofs.errors import DataError, FineproofsError
from fineproofs.viewer import human as human_mod
from fineproofs.viewer import latex, queries
from fineproofs.viewer.index import RunIndex

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _tex(value: Any) -> Markup:
    """Prose with math as HTML; :func:`latex.render` escapes every input character it does not produce itself."""
    return Markup(latex.render("" if value is None else str(value)))  # noqa: S704


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tex"] = _tex
    env.filters["q"] = lambda d: urlencode(d)
    env.filters["u"] = lambda s: quote(str(s), safe="")
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.2f}"
    return env


class Viewer:
    """The app: the index, the human grades and the templates of one run directory."""

    def __init__(self, run_dir: Path, grades_file: Path | None = None, workdir: Path | None = None):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise DataError(f"{run_dir} is not a directory: give the run directory of a `fineproofs build`")
        markers = (rundir.MANIFEST, "problems", rundir.STAGES, rundir.QUARANTINE, rundir.DATA)
        if not any((run_dir / m).exists() for m in markers):
            raise DataError(
                f"{run_dir} holds no build output (build.json, problems/, stages/, data/): "
                "give the run directory of a `fineproofs build`"
            )
        self.index = RunIndex(run_dir, workdir)
        self.human = human_mod.HumanGrades(grades_file or human_mod.grades_path(run_dir))
        self._sync_human(self.human.snapshot())
        self.token = secrets.token_urlsafe(24)
        self.env = _env()
        self.facets = queries.facets(self.index)

    def _sync_human(self, grades: dict[str, dict[str, Any]]) -> None:
        con = self.index.db()
        con.executemany(
            "INSERT OR REPLACE INTO human VALUES (?, ?, ?)",
            ((k, g.get("problem_id") or k.split(":", 1)[0], g["grade"]) for k, g in grades.items()),
        )
        con.commit()

    def render(self, name: str, **ctx: Any) -> bytes:
        ctx.setdefault("run_dir", self.index.run_dir.name)
        ctx.setdefault("run_path", str(self.index.run_dir))
        ctx.setdefault("n_human", len(self.human.latest))
        return self.env.get_template(name).render(**ctx).encode("utf-8")

    def close(self) -> None:
        self.index.close()

    # ------------------------------------------------------------------ pages
    def page_overview(self, params: dict[str, str]) -> bytes:
        return self.render(
            "overview.html", o=queries.overview(self.index), warnings=self.index.warnings, split=self.index.split_kind
        )

    def page_problems(self, params: dict[str, str]) -> bytes:
        f = queries.ProblemQuery.from_query(params)
        res = queries.list_problems(self.index, f)
        return self.render("problems.html", f=f, res=res, facets=self.facets, bands=list(queries.REWARD_BANDS))

    def page_problem(self, pid: str, params: dict[str, str]) -> bytes | None:
        d = queries.problem_detail(self.index, pid, self.human.snapshot(), _int(params.get("sp"), 1))
        if d is None:
            return None
        return self.render("problem.html", d=d, token=self.token, saved=params.get("saved", ""))

    def page_quarantine(self, params: dict[str, str]) -> bytes:
        res = queries.list_quarantine(
            self.index, params.get("stage", "")[:200], params.get("q", "")[:500], _int(params.get("page"), 1)
        )
        return self.render("quarantine.html", res=res, stage=params.get("stage", ""), q=params.get("q", ""))

    def page_human(self, params: dict[str, str]) -> bytes:
        grades = self.human.snapshot()
        dis = human_mod.disagreements(grades, lambda k: queries.sample_context(self.index, k))
        return self.render("human.html", grades=grades, dis=dis, path=str(self.human.path))

    def export(self) -> bytes:
        rows = human_mod.calibration_rows(self.human.snapshot(), lambda k: queries.sample_context(self.index, k))
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")

    def grade(self, form: dict[str, str]) -> str:
        """Store one human grade; returns the page to go back to."""
        if not secrets.compare_digest(form.get("token", ""), self.token):
            raise PermissionError("stale or missing form token: reload the page")
        ctx = queries.sample_context(self.index, form.get("sample_key", ""))
        if ctx is None:
            raise DataError(f"no sample {form.get('sample_key', '')!r} in this run")
        self.human.add(ctx["key"], ctx["pid"], form.get("grade", ""), form.get("note", ""), ctx["score"])
        self._sync_human({ctx["key"]: self.human.latest[ctx["key"]]})
        back = {"saved": ctx["key"]}
        if form.get("sp"):
            back["sp"] = str(_int(form.get("sp"), 1))
        return f"/problem/{quote(ctx['pid'], safe='')}?{urlencode(back)}#s-{quote(ctx['key'], safe='')}"


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ responses
    def send(
        self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, status: int, message: str) -> None:
        body = self.server.viewer.render("error.html", status=int(status), message=message)
        self.send(status, body)

    def host_ok(self) -> bool:
        if not self.server.loopback:
            return True
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        return host in LOOPBACK_NAMES or _is_loopback(host)

    # ------------------------------------------------------------------ routes
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self.host_ok():
            return self.fail(HTTPStatus.BAD_REQUEST, "unexpected Host header")
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query))
        v = self.server.viewer
        try:
            self.route_get(v, url.path, params)
        except FineproofsError as e:
            self.fail(HTTPStatus.BAD_REQUEST, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("viewer: GET %s failed", url.path)
            self.fail(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the server's log)")

    def route_get(self, v: Viewer, path: str, params: dict[str, str]) -> None:
        pages: dict[str, Callable[[dict[str, str]], bytes]] = {
            "/": v.page_overview,
            "/problems": v.page_problems,
            "/quarantine": v.page_quarantine,
            "/human": v.page_human,
        }
        if path in pages:
            return self.send(200, pages[path](params))
        if path.startswith("/problem/"):
            body = v.page_problem(path.removeprefix("/problem/"), params)
            return self.send(200, body) if body else self.fail(HTTPStatus.NOT_FOUND, "no such problem in this run")
        if path == "/export/calibration.jsonl":
            return self.send(
                200,
                v.export(),
                "application/x-ndjson; charset=utf-8",
                {"Content-Disposition": 'attachment; filename="human_calibration.jsonl"'},
            )
        if path.startswith("/static/"):
            return self.send_file(HERE / "static", path.removeprefix("/static/"))
        if path.startswith("/plots/"):
            return self.send_file(v.index.run_dir / "plots", path.removeprefix("/plots/"))
        self.fail(HTTPStatus.NOT_FOUND, "no such page")

    def send_file(self, folder: Path, name: str) -> None:
        ctype = STATIC_TYPES.get(Path(name).suffix)
        target = folder / name
        if not _SAFE_NAME.match(name) or ctype is None or not target.is_file():
            return self.fail(HTTPStatus.NOT_FOUND, "no such file")
        self.send(200, target.read_bytes(), ctype)

    def do_POST(self) -> None:
        if not self.host_ok() or urlsplit(self.path).path != "/grade":
            return self.fail(HTTPStatus.NOT_FOUND, "no such page")
        length = _int(self.headers.get("Content-Length"), 0)
        if not 0 < length <= 64_000:
            return self.fail(HTTPStatus.BAD_REQUEST, "empty or oversized form")
        form = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True))
        try:
            back = self.server.viewer.grade(form)
        except PermissionError as e:
            return self.fail(HTTPStatus.FORBIDDEN, str(e))
        except FineproofsError as e:
            return self.fail(HTTPStatus.BAD_REQUEST, str(e))
        except OSError as e:
            return self.fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"could not store the grade: {e}")
        self.send(HTTPStatus.SEE_OTHER, b"", extra={"Location": back})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ViewerServer(ThreadingHTTPServer):
    """A running viewer: ``.url``, ``.shutdown()``; serves in a background thread once started."""

    daemon_threads = True

    def __init__(self, viewer: Viewer, host: str, port: int):
        self.viewer = viewer
        self.loopback = host in LOOPBACK_NAMES or _is_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.server_address[1]}/"
        self._thread: threading.Thread | None = None

    def start(self) -> ViewerServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fineproofs-view", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True while the server is still serving."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self) -> None:
        """Stop serving, close the socket and drop the index (the run directory is untouched)."""
        if self._thread is not None:
            super().shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        self.viewer.close()
