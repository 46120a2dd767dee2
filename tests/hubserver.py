"""A loopback Hugging Face Hub for tests: a **test double of the Hub HTTP protocol**.

This is not the Hub. It is a small aiohttp server bound to ``127.0.0.1`` (its own
event loop in a background thread) that speaks the parts of the Hub HTTP API that
``huggingface_hub`` 2.4 (``HfApi``, ``hf_hub_download``, ``HfFileSystem``) and
``datasets`` use to push a dataset and load it back, with the routes and payloads
read from huggingface_hub's source:

- ``POST /api/repos/create`` (``create_repo``; 409 when it exists);
- ``POST /api/validate-yaml`` (``create_commit`` posts README.md here first): the
  YAML block must parse to a mapping, ``license`` must be a licence id; 400 with
  ``{"errors": [...]}`` otherwise;
- ``GET /api/datasets/{repo}[/revision/{rev}]`` (``repo_info`` / ``dataset_info``);
- ``POST /api/datasets/{repo}/preupload/{rev}``: upload mode per file (``lfs`` for
  parquet/png and files over 10 MB, ``regular`` otherwise) and the remote oid;
- ``POST /datasets/{repo}.git/info/lfs/objects/batch`` (LFS batch API, ``basic``
  transfer), ``PUT /lfs/{oid}`` (upload, sha256 and size checked), ``POST
  /lfs/verify``;
- ``POST /api/datasets/{repo}/commit/{rev}[?create_pr=1]``: the ndjson commit
  (``header``, ``file`` base64, ``lfsFile``, ``deletedFile``, ``deletedFolder``),
  applied atomically: either the whole commit lands or the branch does not move;
- ``POST|DELETE /api/datasets/{repo}/branch/{branch}``, ``GET /api/datasets/{repo}/refs``,
  ``DELETE /api/repos/delete``;
- ``GET /api/datasets/{repo}/tree/{rev}[/{path}]`` (``?recursive=``),
  ``POST /api/datasets/{repo}/paths-info/{rev}``;
- ``GET|HEAD /datasets/{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``,
  ``ETag``/``X-Linked-Etag``/``X-Linked-Size`` and ``Range``.

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) as the Hub does. Xet storage is not spoken: run clients with
``HF_HUB_DISABLE_XET=1``.

Fault injection: ``server.fail("commit", status=500, times=1)`` makes the next
request(s) of that kind (``commit``, ``preupload``, ``lfs_batch``, ``lfs_upload``,
``create``) fail; ``commit_lost`` applies the next commit and then answers 500 (a
commit that landed whose answer was lost); ``server.requests`` records ``(method, path, authenticated)`` and
``server.tokens`` the bearer tokens seen (for tests that check the token was used).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

import yaml
from aiohttp import web

LFS_SUFFIXES = (".parquet", ".png", ".jpg", ".jpeg", ".arrow", ".bin", ".safetensors", ".gz", ".zip")
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        if self.lfs:  # git oid of the LFS pointer file
            ptr = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
            return git_oid(ptr.encode())
        return git_oid(self.data)

    def info(self, path: str) -> dict:
        d = {"type": "file", "oid": self.oid, "size": len(self.data), "path": path}
        if self.lfs:
            d["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": 134}
        return d


@dataclass
class Commit:
    oid: str
    files: dict[str, Entry]
    message: str
    parent: str | None
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "main", "refs/pr/1" -> commit oid
    prs: int = 0

    def resolve(self, rev: str) -> Commit | None:
        if rev in self.refs:
            return self.commits[self.refs[rev]]
        if rev in self.commits:
            return self.commits[rev]
        return None


def _err(status: int, message: str, code: str | None = None) -> web.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=headers)


class HubServer:
    """``with HubServer() as hub: hub.url``; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.faults: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str, bool]] = []
        self.tokens: set[str] = set()
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._run, name="hubserver", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("hub server did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test helpers --------------------------------------------------------

    def fail(self, kind: str, status: int = 500, times: int = 1) -> None:
        self.faults.setdefault(kind, []).extend([status] * times)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        r = self.repos.get((repo_type, repo_id))
        c = r.resolve(rev) if r else None
        return {p: e.data for p, e in c.files.items()} if c else {}

    def _fault(self, kind: str) -> web.Response | None:
        with self.lock:
            q = self.faults.get(kind)
            status = q.pop(0) if q else None
        if status is None:
            return None
        return _err(status, f"injected fault on {kind}")

    # -- routing -------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            self.tokens.add(auth[7:])
        raw = request.raw_path.split("?", 1)[0]
        self.requests.append((request.method, raw, bool(auth)))
        parts = [unquote(p) for p in raw.strip("/").split("/")]
        m = request.method
        try:
            if parts[:3] == ["api", "repos", "create"] and m == "POST":
                return await self._create(request)
            if parts[:3] == ["api", "repos", "delete"] and m == "DELETE":
                body = await request.json()
                key = (body.get("type") or "model", f"{body.get('organization') or 'user'}/{body['name']}")
                with self.lock:
                    if self.repos.pop(key, None) is None:
                        return _err(404, "Repository not found", "RepoNotFound")
                return web.json_response({})
            if parts[:2] == ["api", "validate-yaml"] and m == "POST":
                return await self._validate_yaml(request)
            if len(parts) >= 4 and parts[0] == "api" and parts[1] in ("datasets", "models", "spaces"):
                rtype = parts[1][:-1]
                repo_id = f"{parts[2]}/{parts[3]}"
                rest = parts[4:]
                return await self._api_repo(request, rtype, repo_id, rest)
            if (
                len(parts) >= 5
                and parts[0] == "datasets"
                and parts[2].endswith(".git")
                and parts[3:] == ["info", "lfs", "objects", "batch"]
            ):
                return await self._lfs_batch(request, f"{parts[1]}/{parts[2][:-4]}")
            if parts[:1] == ["lfs"] and len(parts) == 2 and parts[1] == "verify" and m == "POST":
                return await self._lfs_verify(request)
            if parts[:1] == ["lfs"] and len(parts) == 2 and m == "PUT":
                return await self._lfs_put(request, parts[1])
            if len(parts) >= 5 and parts[0] == "datasets" and parts[3] == "resolve" and m in ("GET", "HEAD"):
                return self._resolve(request, "dataset", f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]))
        except web.HTTPException:
            raise
        return _err(404, f"hubserver: no route for {m} {raw}")

    def _get_repo(self, rtype: str, repo_id: str) -> Repo | None:
        return self.repos.get((rtype, repo_id))

    async def _api_repo(self, request, rtype, repo_id, rest):
        m = request.method
        repo = self._get_repo(rtype, repo_id)
        if repo is None:
            return _err(404, f"Repository {repo_id} not found", "RepoNotFound")
        if not rest and m == "GET":
            return self._info(repo, "main")
        kind = rest[0]
        if kind == "revision" and m == "GET":
            return self._info(repo, "/".join(rest[1:]))
        if kind == "preupload" and m == "POST":
            return await self._preupload(request, repo, rest[1])
        if kind == "commit" and m == "POST":
            return await self._commit(request, repo, rest[1])
        if kind == "branch" and m == "POST":
            return await self._branch(request, repo, "/".join(rest[1:]))
        if kind == "branch" and m == "DELETE":
            with self.lock:
                if repo.refs.pop("/".join(rest[1:]), None) is None:
                    return _err(404, "branch not found", "RevisionNotFound")
            return web.json_response({})
        if kind == "refs" and m == "GET":
            return web.json_response(
                {
                    "branches": [
                        {"name": k, "ref": f"refs/heads/{k}", "targetCommit": v}
                        for k, v in repo.refs.items()
                        if not k.startswith("refs/")
                    ],
                    "converts": [],
                    "tags": [],
                    "pullRequests": [
                        {"name": k, "ref": k, "targetCommit": v}
                        for k, v in repo.refs.items()
                        if k.startswith("refs/pr/")
                    ],
                }
            )
        if kind == "tree" and m == "GET":
            return self._tree(request, repo, rest[1], "/".join(rest[2:]))
        if kind == "paths-info" and m == "POST":
            return await self._paths_info(request, repo, rest[1])
        return _err(404, f"hubserver: no route for {m} /api/{rtype}s/{repo_id}/{'/'.join(rest)}")

    # -- handlers --------------------------------------------------------------

    async def _create(self, request):
        if f := self._fault("create"):
            return f
        body = await request.json()
        rtype = body.get("type") or "model"
        repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
        with self.lock:
            if (rtype, repo_id) in self.repos:
                return _err(409, "You already created this repo")
            repo = Repo(repo_id, rtype, body.get("visibility") == "private" or bool(body.get("private")))
            init = Commit(
                uuid.uuid4().hex + "00000000",
                {".gitattributes": Entry(b"*.parquet filter=lfs\n", False)},
                "initial commit",
                None,
            )
            repo.commits[init.oid] = init
            repo.refs["main"] = init.oid
            self.repos[(rtype, repo_id)] = repo
        prefix = "" if rtype == "model" else f"{rtype}s/"
        return web.json_response({"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id, "id": repo_id})

    async def _validate_yaml(self, request):
        body = await request.json()
        content = body.get("content", "")
        errors = []
        if content.startswith("---"):
            block = content.split("\n---", 1)[0][3:]
            try:
                meta = yaml.safe_load(block)
                if not isinstance(meta, dict):
                    errors.append("metadata must be a YAML mapping")
                elif "license" in meta and not isinstance(meta["license"], (str, list)):
                    errors.append('"license" must be a string or a list')
                elif body.get("repoType") == "dataset" and not isinstance(meta.get("configs", []), list):
                    errors.append('"configs" must be a list')
            except yaml.YAMLError as e:
                errors.append(f"invalid YAML: {e}")
        if errors:
            return web.json_response({"errors": [{"message": e} for e in errors]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    def _info(self, repo: Repo, rev: str):
        c = repo.resolve(rev)
        if c is None:
            return _err(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        card = {}
        if "README.md" in c.files:
            text = c.files["README.md"].data.decode()
            if text.startswith("---"):
                card = yaml.safe_load(text.split("\n---", 1)[0][3:]) or {}
        return web.json_response(
            {
                "_id": repo.repo_id,
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": c.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "cardData": card,
                "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(c.date)),
                "createdAt": "2025-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(c.files)],
            }
        )

    async def _preupload(self, request, repo, rev):
        if f := self._fault("preupload"):
            return f
        body = await request.json()
        c = repo.resolve(unquote(rev))
        out = []
        for f in body["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_SIZE
            remote = c.files.get(f["path"]) if c else None
            oid = None
            if remote is not None:
                oid = remote.sha256 if remote.lfs else git_oid(remote.data)
            out.append(
                {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return web.json_response({"files": out, "commitOid": c.oid if c else None})

    async def _lfs_batch(self, request, repo_id):
        if f := self._fault("lfs_batch"):
            return f
        if self._get_repo("dataset", repo_id) is None:
            return _err(404, "Repository not found", "RepoNotFound")
        body = await request.json()
        objs = []
        for o in body["objects"]:
            d = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.lfs:
                d["actions"] = {
                    "upload": {"href": f"{self.url}/lfs/{o['oid']}", "header": {}},
                    "verify": {"href": f"{self.url}/lfs/verify", "header": {}},
                }
            objs.append(d)
        return web.json_response(
            {"transfer": "basic", "objects": objs, "hash_algo": "sha256"}, content_type="application/vnd.git-lfs+json"
        )

    async def _lfs_put(self, request, oid):
        if f := self._fault("lfs_upload"):
            return f
        data = await request.read()
        if hashlib.sha256(data).hexdigest() != oid:
            return _err(400, "sha256 mismatch")
        with self.lock:
            self.lfs[oid] = data
        return web.Response(status=200)

    async def _lfs_verify(self, request):
        body = await request.json()
        data = self.lfs.get(body["oid"])
        if data is None or len(data) != body["size"]:
            return _err(404, "object not uploaded")
        return web.json_response({"ok": True})

    async def _commit(self, request, repo, rev):
        if f := self._fault("commit"):
            return f
        rev = unquote(rev)
        create_pr = request.query.get("create_pr") in ("1", "true")
        lines = [json.loads(x) for x in (await request.read()).decode().splitlines() if x.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        with self.lock:
            base = repo.resolve(rev)
            if base is None:
                return _err(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            if header.get("parentCommit") and header["parentCommit"] != base.oid:
                return _err(412, "parent commit is not the head of the branch")
            files = dict(base.files)
            for x in lines:
                k, v = x["key"], x["value"]
                if k == "file":
                    files[v["path"]] = Entry(base64.b64decode(v["content"]), False)
                elif k == "lfsFile":
                    data = self.lfs.get(v["oid"])
                    if data is None:
                        return _err(422, f"LFS object {v['oid']} of {v['path']} was not uploaded")
                    files[v["path"]] = Entry(data, True)
                elif k == "deletedFile":
                    if v["path"] not in files:
                        return _err(404, f"A file with this name doesn't exist: {v['path']}", "EntryNotFound")
                    del files[v["path"]]
                elif k == "deletedFolder":
                    prefix = v["path"].rstrip("/") + "/"
                    for p in [p for p in files if p.startswith(prefix)]:
                        del files[p]
                elif k != "header":
                    return _err(400, f"unknown commit operation {k}")
            oid = hashlib.sha1(
                json.dumps(
                    [base.oid, sorted((p, e.sha256) for p, e in files.items()), header.get("summary"), time.time_ns()]
                ).encode()
            ).hexdigest()
            repo.commits[oid] = Commit(oid, files, header.get("summary", ""), base.oid)
            pr_url = None
            if create_pr:
                repo.prs += 1
                repo.refs[f"refs/pr/{repo.prs}"] = oid
                pr_url = f"{self.url}/datasets/{repo.repo_id}/discussions/{repo.prs}"
            else:
                repo.refs[rev] = oid
        if f := self._fault("commit_lost"):
            return f
        return web.json_response(
            {
                "commitUrl": f"{self.url}/datasets/{repo.repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": pr_url,
                "success": True,
            }
        )

    async def _branch(self, request, repo, branch):
        try:
            body = await request.json()
        except Exception:
            body = {}
        with self.lock:
            if branch in repo.refs:
                return _err(409, f"Branch {branch} already exists")
            start = repo.resolve(body.get("startingPoint") or "main")
            if start is None:
                return _err(404, "Invalid starting point", "RevisionNotFound")
            repo.refs[branch] = start.oid
        return web.json_response({})

    def _listing(self, c: Commit, path: str, recursive: bool) -> list[dict] | None:
        path = path.strip("/")
        prefix = path + "/" if path else ""
        if path and path in c.files:
            return None
        out, dirs = [], set()
        for p in sorted(c.files):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix) :].split("/")
            for i in range(1, len(rel)):
                d = prefix + "/".join(rel[:i])
                if (recursive or i == 1) and d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "oid": git_oid(d.encode()), "size": 0, "path": d})
            if recursive or len(rel) == 1:
                out.append(c.files[p].info(p))
        if path and not out:
            return None
        return out

    def _tree(self, request, repo, rev, path):
        c = repo.resolve(rev)
        if c is None:
            return _err(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        recursive = request.query.get("recursive", "false").lower() in ("1", "true")
        out = self._listing(c, path, recursive)
        if out is None:
            return _err(404, f"{path} does not exist on {rev}", "EntryNotFound")
        return web.json_response(out)

    async def _paths_info(self, request, repo, rev):
        c = repo.resolve(unquote(rev))
        if c is None:
            return _err(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        form = parse_qs((await request.read()).decode())
        out = []
        for p in form.get("paths", []):
            p = p.strip("/")
            if p in c.files:
                out.append(c.files[p].info(p))
            elif any(f.startswith(p + "/") for f in c.files):
                out.append({"type": "directory", "oid": git_oid(p.encode()), "size": 0, "path": p})
        return web.json_response(out)

    def _resolve(self, request, rtype, repo_id, rev, path):
        repo = self._get_repo(rtype, repo_id)
        if repo is None:
            return _err(404, "Repository not found", "RepoNotFound")
        c = repo.resolve(rev)
        if c is None:
            return _err(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        e = c.files.get(path)
        if e is None:
            return _err(404, f"Entry not found: {path}", "EntryNotFound")
        etag = f'"{e.sha256 if e.lfs else e.oid}"'
        headers = {
            "X-Repo-Commit": c.oid,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if e.lfs:
            headers["X-Linked-Etag"] = etag
            headers["X-Linked-Size"] = str(len(e.data))
        data, status = e.data, 200
        rng = request.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else max(0, len(data) - int(b))
            end = int(b) if (a and b) else len(data) - 1
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=status, headers=headers)
        return web.Response(body=data, status=status, headers=headers)


def _main() -> None:  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description="loopback Hub protocol test double")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    with HubServer(port=args.port) as hub:
        print(f"HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    _main()
