"""A build's peak disk use is bounded by a multiple of its finished run directory.

The run directory is measured (every file under it, the store's ``-wal``/``-shm`` and
temporary files included; file lengths, so the figures do not depend on the file
system) at the moments its size can peak, not on a clock:

* just before every ``os.replace``: a file written beside its old copy
  (:func:`fineproofs.rundir.atomic_write`: stage files, the card, ``build.json``; the
  split's parquet shards), both still on disk;
* right after every commit of the response store: the WAL at its longest, just after
  a checkpoint copied it into the database;
* just before the store closes, and before every ``shutil.rmtree`` (ingest's cleanup).

A paper-profile build against a loopback stand-in server, then the same build run again
(its stage files and split rewritten beside the old ones), each stays within
:data:`BOUND` of the run directory it leaves. ``bench/bench_disk.py`` measures the same
on larger builds.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from buildkit import PAPER_MODELS, paper_profile_file
from faultproxy import FaultServer
from oracle import oracle_reply

from fineproofs import rundir
from fineproofs import store as store_mod
from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build

#: peak disk use of a build over the size of the run directory it leaves (the README's figure)
BOUND = 1.5


def disk(root: Path) -> dict[str, int]:
    """Every file under ``root``: relative path -> length (files that vanish meanwhile are skipped)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            try:
                if not p.is_symlink():
                    out[str(p.relative_to(root))] = p.stat().st_size
            except OSError:
                continue
    return out


class Probe:
    """The largest size of ``root`` seen at the probed moments, with what it held then."""

    def __init__(self, root: Path):
        self.root = root
        self.peak: dict[str, int] = {}
        self.where = ""
        self.wal: list[tuple[int, int]] = []  # (WAL, database) after each commit
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.peak.values())

    def __call__(self, where: str) -> None:
        with self._lock:
            now = disk(self.root)
            if sum(now.values()) > self.total:
                self.peak, self.where = now, where

    def after_commit(self, path: Path) -> None:
        self(f"commit to {path.name}")
        wal = Path(f"{path}-wal")
        with self._lock:
            if wal.exists():
                self.wal.append((wal.stat().st_size, path.stat().st_size))

    def reset(self) -> None:
        self.peak, self.where, self.wal = {}, "", []

    def report(self, final: dict[str, int]) -> str:
        top = sorted(self.peak.items(), key=lambda kv: -kv[1])[:6]
        return (
            f"peak {self.total} B at {self.where} = {self.total / sum(final.values()):.2f} x the final "
            f"{sum(final.values())} B; largest then: {top}"
        )


@pytest.fixture
def probe(tmp_path, monkeypatch):
    p = Probe(tmp_path / "run")
    replace, rmtree = os.replace, shutil.rmtree

    def probed_replace(src, dst, *a, **k):
        p(f"replace {Path(dst).name}")
        return replace(src, dst, *a, **k)

    def probed_rmtree(path, *a, **k):
        p(f"rmtree {Path(path).name}")
        return rmtree(path, *a, **k)

    def after(method):
        def wrapped(self, *a, **k):
            out = method(self, *a, **k)
            p.after_commit(self.path)
            return out

        return wrapped

    close = store_mod.ResponseStore.close

    def probed_close(self):
        p(f"close {self.path.name}")
        close(self)

    monkeypatch.setattr(os, "replace", probed_replace)
    monkeypatch.setattr(shutil, "rmtree", probed_rmtree)
    monkeypatch.setattr(store_mod.ResponseStore, "put_many", after(store_mod.ResponseStore.put_many))
    monkeypatch.setattr(store_mod.ResponseStore, "plan", after(store_mod.ResponseStore.plan))
    monkeypatch.setattr(store_mod.ResponseStore, "close", probed_close)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    return p


def thinking_replies(messages, prefill, seed, index) -> str:
    """Oracle replies whose thinking is 3 KB long, as a thinking model's rollouts are long:
    the stage files then hold a realistic share of the run directory."""
    text = oracle_reply(messages, prefill, seed, index)
    if "</think>" not in text:
        return text
    head, tail = text.split("</think>", 1)
    return head + " we check the next case with care." * 90 + "</think>" + tail


def _build(tmp_path: Path, url: str) -> Build:
    overrides = {"decontamination": {"benchmarks": [], "required": False}}
    prof = load_profile(str(paper_profile_file(tmp_path, url, student_samples=16, overrides=overrides)))
    return Build(prof, tmp_path / "run", "rl", limit=8, progress=False)


def test_build_and_rerun_peak_within_bound_of_final(tmp_path, probe):
    with FaultServer(model=PAPER_MODELS, reply_fn=thinking_replies) as s:
        res = _build(tmp_path, s.url).run()
        assert res.generated > 0 and res.rows["default"] > 0
        final = disk(tmp_path / "run")
        assert probe.wal, "no commit was probed"
        first = probe.report(final)
        assert probe.total <= BOUND * sum(final.values()), first
        # no WAL of the previous store and no temporary file is left behind
        assert not [f for f in final if f.endswith((".tmp", "-wal"))], sorted(final)

        probe.reset()
        res = _build(tmp_path, s.url).run()
        assert res.generated == 0
        again = disk(tmp_path / "run")
        assert probe.total <= BOUND * sum(again.values()), probe.report(again)
        assert probe.total > sum(again.values()), "the re-run rewrote nothing beside its old files"


def test_wal_stays_within_a_quarter_of_the_database(tmp_path):
    """Written the way a build writes (one request's samples per commit), the WAL never holds
    more than a quarter of the database plus one commit (or the 256 KiB floor), and the
    store holds everything once closed."""
    from fineproofs.store import ResponseStore, StoredResponse

    path = tmp_path / "s.sqlite"
    wal = Path(f"{path}-wal")
    commit = 16 * 3000  # bytes of text per commit
    worst = 0.0
    with ResponseStore(path) as st:
        for b in range(400):
            rows = [
                (StoredResponse(f"k{b}-{i}", "rollouts", "m", "ok", "", "x" * 3000, "stop", 10, 20), {})
                for i in range(16)
            ]
            st.put_many(rows)
            pages = st._db.execute("PRAGMA page_count").fetchone()[0]  # the database, WAL frames included
            # 4120 B: a WAL frame (page + header); a commit's frames: its rows' pages plus the
            # index and totals pages it touches, well under 4x its text
            allowed = max(64, pages // 4) * 4120 + 4 * commit
            worst = max(worst, wal.stat().st_size / allowed)
        assert st.count() == 6400
    assert worst <= 1.0, f"the WAL reached {worst:.2f} x its bound"
    assert not wal.exists() or wal.stat().st_size == 0
    assert path.stat().st_size > 400 * commit


def test_ingest_removes_its_consumed_intermediates_and_resumes_without_them(tmp_path, monkeypatch):
    """Once ingest's last step has finished, the shards only its later steps read
    (``work/clean``, ``work/minhash``, ``work/dedup``) are gone; a user's file in ``work/`` and
    ``work/final`` stay, and a re-run skips every step and returns the same problems."""
    from fineproofs.pipelines.ingest import INTERMEDIATE, run_ingest

    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")
    overrides = {"decontamination": {"benchmarks": [], "required": False}}
    prof = load_profile(str(paper_profile_file(tmp_path, "http://127.0.0.1:9", overrides=overrides)))
    out = rundir.claim(tmp_path / "run")
    (out / "work").mkdir()
    (out / "work" / "notes.txt").write_text("mine\n")
    first = run_ingest(prof, out)
    assert first.problems
    assert not [rel for rel in INTERMEDIATE if (out / rel).exists()]
    assert (out / "work" / "notes.txt").read_text() == "mine\n"
    assert list((out / "work" / "final").glob("*.jsonl"))
    again = run_ingest(prof, out)
    assert [p.to_dict() for p in again.problems] == [p.to_dict() for p in first.problems]
    assert again.counts == first.counts and again.dropped == first.dropped
    assert not [rel for rel in INTERMEDIATE if (out / rel).exists()], "a re-run ran a finished step again"
