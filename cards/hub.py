"""Push a built run directory to the Hugging Face Hub as a dataset repo.

What is pushed (:func:`push_plan`): ``README.md`` (the card, with the real repo id in
its loading snippet), the parquet shards of every config the card declares
(``data/<config>/*.parquet``), the plots the card links (``plots/*.png``) and
``profile.yaml``. Nothing else: a run directory also holds ``store.sqlite``,
``stages/``, ``quarantine/``, ``problems/`` and logs, which never leave the machine.

How (:func:`push_run`): everything is validated offline before the first request
(:func:`push_plan`): the card's metadata (:func:`fineproofs.cards.validate_card`) and
its body (it must end with the card's closing line, so a half-written card is refused),
``profile.yaml`` (it must load as a profile), and every parquet file against the
features its config declares in the card. Then one ``HfApi.create_commit`` with a
``CommitOperationAdd`` per file (and a ``CommitOperationDelete`` for each remote
``data/``/``plots/`` file this run no longer has, e.g. shards of a bigger earlier
build), on the head the push started from (``parent_commit``). A Hub commit is
atomic: if anything fails before or during it, the branch does not move, so a
failed push leaves the remote as it was; a repo or branch that this push created
itself is deleted again when the commit fails. The failure message says what the
remote holds, read back after the failure: unchanged (its head is still the one the
push started from), or moved (the commit may have landed with its answer lost), or a
repo this push created that could not be removed.

The token comes from huggingface_hub's usual places (``HF_TOKEN``, the token file
written by ``hf auth login``), or ``token=``. It is never logged, and the push
refuses to upload any file that contains it. ``HF_ENDPOINT`` is read at call time
(so a mirror or a test server can be chosen per call).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fineproofs import rundir
from fineproofs.errors import PushError  # a push that did not happen: the remote is unchanged

__all__ = ["PlannedFile", "PushError", "push_plan", "push_run"]

log = logging.getLogger(__name__)

REPO_TYPE = "dataset"


@dataclass
class PlannedFile:
    path_in_repo: str
    data: bytes


def _card_text(run_dir: Path) -> str:
    card = run_dir / rundir.CARD
    if not card.is_file():
        raise PushError(f"{run_dir} has no {rundir.CARD}: is it a finished build (fineproofs build --output DIR)?")
    try:
        return card.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PushError(f"{card} is damaged (not UTF-8 text at byte {e.start}); re-run the build to rewrite it") from e


def _declared_features(meta: dict) -> dict:
    """config name -> the ``datasets.Features`` the card's ``dataset_info`` declares for it."""
    from datasets import Features

    infos = meta.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    return {i.get("config_name", "default"): Features._from_yaml_list(i["features"]) for i in infos if "features" in i}


def _checked_rows(run_dir: Path, config: str, files: list[str], want) -> int:
    """Rows in a config's parquet files, each opened once: a damaged file, or one whose
    features are not the ``want`` the card declares (when it declares them), is refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features

    rows = 0
    for f in (run_dir / f for f in files if f.endswith(".parquet")):
        try:
            pf = pq.ParquetFile(f)
            got = Features.from_arrow_schema(pf.schema_arrow) if want is not None else None
        except (pa.ArrowException, OSError, ValueError) as e:
            raise PushError(f"{f} is damaged ({str(e).splitlines()[0]}); re-run the build to rewrite it") from e
        if got != want:
            diff = sorted(set(got) ^ set(want)) or [k for k in want if got.get(k) != want[k]]
            raise PushError(
                f"{f} does not have the features its config {config!r} declares in the card "
                f"(differs in: {', '.join(diff)}); re-run the build to rewrite the split"
            )
        rows += pf.metadata.num_rows
    return rows


def push_plan(run_dir: Path, repo_id: str = "") -> list[PlannedFile]:
    """The exact files a push uploads, README.md first (card validated offline)."""
    from huggingface_hub import DatasetCard

    from fineproofs.cards import REPO_PLACEHOLDER, CardValidationError, validate_card

    run_dir = Path(run_dir)
    text = _card_text(run_dir)
    try:
        validate_card(text, root=run_dir)
    except CardValidationError as e:
        raise PushError(str(e)) from e
    if repo_id:
        text = text.replace(f'load_dataset("{REPO_PLACEHOLDER}"', f'load_dataset("{repo_id}"')
    meta = DatasetCard(text).data.to_dict()
    declared = _declared_features(meta)
    paths: list[str] = []
    for c in meta.get("configs") or []:
        for df in c.get("data_files") or []:
            pats = df["path"] if isinstance(df, dict) else df
            for pat in [pats] if isinstance(pats, str) else pats:
                hits = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.glob(pat) if p.is_file())
                if not hits:
                    raise PushError(f"config {c.get('config_name')!r}: no file in {run_dir} matches {pat}")
                if not _checked_rows(run_dir, c.get("config_name"), hits, declared.get(c.get("config_name"))):
                    raise PushError(
                        f"config {c.get('config_name')!r} has no rows: an empty split cannot be "
                        "loaded from the Hub; rebuild with more problems (see the card's drop reasons)"
                    )
                paths += [h for h in hits if h not in paths]
    for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        if "://" not in link and link not in paths:
            paths.append(link)
    for p in paths:
        top = p.split("/", 1)[0]
        if top not in ("data", "plots") or ".." in p.split("/"):
            raise PushError(f"refusing to push {p}: only data/, plots/, README.md and profile.yaml are published")
    _check_body(text, run_dir)
    plan = [PlannedFile(rundir.CARD, text.encode())]
    if (run_dir / "profile.yaml").is_file():
        plan.append(PlannedFile("profile.yaml", _checked_profile(run_dir / "profile.yaml")))
    plan += [PlannedFile(p, (run_dir / p).read_bytes()) for p in paths]
    return plan


def _check_body(text: str, run_dir: Path) -> None:
    from fineproofs.cards import CARD_END

    if CARD_END not in text[-2000:]:
        raise PushError(
            f"{run_dir / rundir.CARD} is incomplete (its closing line is missing: a build cut while writing "
            "it?); re-run the same build command to rewrite the card"
        )


def _checked_profile(path: Path) -> bytes:
    from fineproofs.config import ConfigError, load_profile

    data = path.read_bytes()
    try:
        load_profile(str(path))
    except (ConfigError, OSError, UnicodeDecodeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PushError(f"{path} is damaged ({first}); re-run the same build command to rewrite it") from None
    return data


def _resolve_token(token: str | None) -> str | None:
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Push RUN_DIR's split, card and plots to ``repo_id`` in one commit.

    Returns the URL of the dataset (of its branch, or of the pull request with
    ``create_pr``). Raises :class:`PushError` when nothing was pushed.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    run_dir = Path(run_dir)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise PushError(f"repo id must look like ORG/NAME, got {repo_id!r}")
    plan = push_plan(run_dir, repo_id)
    tok = _resolve_token(token)
    if tok and any(tok.encode() in f.data for f in plan):
        raise PushError("refusing to push: a file to upload contains the Hub token")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    api = HfApi(endpoint=endpoint, token=tok)
    branch = revision or "main"
    log.info(
        "pushing %d file(s) (%d bytes) from %s to %s (branch %s%s)",
        len(plan),
        sum(len(f.data) for f in plan),
        run_dir,
        repo_id,
        branch,
        ", as a pull request" if create_pr else "",
    )

    created_repo = created_branch = False
    head = ""
    try:
        try:
            api.repo_info(repo_id, repo_type=REPO_TYPE)
        except RepositoryNotFoundError:
            try:
                api.create_repo(repo_id, repo_type=REPO_TYPE, private=private)
                created_repo = True  # only a repo this push created is ever deleted on failure
            except HfHubHTTPError as e:
                if e.response is None or e.response.status_code != 409:
                    raise
        if branch != "main":
            try:
                api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch)
            except RevisionNotFoundError:
                api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
                created_branch = True
        head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch).sha
        remote = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=branch))
        local = {f.path_in_repo for f in plan}
        stale = sorted(p for p in remote - local if p.split("/", 1)[0] in ("data", "plots"))
        ops = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.data) for f in plan]
        ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
        message = commit_message or f"fineproofs: {_split_name(plan)} from {run_dir.name}"
        info = api.create_commit(
            repo_id,
            ops,
            commit_message=message,
            repo_type=REPO_TYPE,
            revision=branch,
            create_pr=create_pr,
            parent_commit=None if create_pr else head,
        )
    except Exception as e:  # HfHubHTTPError, RuntimeError (LFS upload), OSError, ValueError (card/YAML) ...
        moved = _head_moved(api, repo_id, branch, head) if head and not create_pr else None
        undone = _undo(api, repo_id, branch, created_repo, created_branch) if not moved else True
        why = str(e) + (f" ({e.__cause__})" if e.__cause__ and str(e.__cause__) not in str(e) else "")
        raise PushError(
            f"push to {repo_id} failed, {_remote_state(moved, undone, created_repo)}: {_scrub(why, tok)}"
        ) from None
    except BaseException:
        _undo(api, repo_id, branch, created_repo, created_branch)
        raise
    log.info("pushed %s (commit %s)", repo_id, info.oid)
    if create_pr and info.pr_url:
        return info.pr_url
    base = f"{api.endpoint}/datasets/{repo_id}"
    return base if branch == "main" else f"{base}/tree/{branch}"


def _head_moved(api, repo_id: str, branch: str, head: str) -> str | None:
    """The branch's head if it moved away from ``head`` since the push started ("" when it
    cannot be read back), None when it is still ``head``."""
    try:
        now = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch).sha
    except Exception:
        return ""
    return None if now == head else now


def _remote_state(moved: str | None, undone: bool, created_repo: bool) -> str:
    if moved:
        return (
            f"but the remote's head moved during the push (now {moved[:12]}): the commit may have landed "
            "with its answer lost; look at the repo's history before pushing again"
        )
    if moved == "":
        return "and the remote could not be read back: look at the repo before pushing again"
    if not undone:
        return (
            "the remote's files are unchanged, but the empty "
            + ("repo" if created_repo else "branch")
            + " this push created could not be removed: delete it"
        )
    return "the remote is unchanged"


def _split_name(plan: list[PlannedFile]) -> str:
    card = plan[0].data.decode(errors="replace")
    m = re.search(r"^pretty_name: (.+)$", card, re.M)
    return m.group(1).strip() if m else "dataset"


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _undo(api, repo_id: str, branch: str, created_repo: bool, created_branch: bool) -> bool:
    """Best effort: remove what this failed push itself created; False when that failed."""
    try:
        if created_repo:
            api.delete_repo(repo_id, repo_type=REPO_TYPE, missing_ok=True)
        elif created_branch:
            api.delete_branch(repo_id, branch=branch, repo_type=REPO_TYPE)
    except Exception as e:  # the original error matters more
        log.warning(
            "could not remove the %s this failed push created: %s",
            "repo" if created_repo else "branch",
            type(e).__name__,
        )
        return False
    return True
