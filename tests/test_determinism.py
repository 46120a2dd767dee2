"""Same inputs, same dataset: two fresh builds of the same problems write the same rows.

Every model role is a loopback :class:`faultproxy.FaultServer` answering with
:func:`oracle.oracle_reply`, whose reply is a function of the request (messages,
prefill, seed, choice), so two builds can differ only where the build itself lets
order, timing, chunking or a path into what it asks. The two builds here differ in
everything that must not matter:

* the source files are copies in two different directories, listed in the opposite
  order (their absolute paths differ; duplicates across the files are kept by content);
* chunk size, chunks in flight, prefetch depth and per-role concurrency differ, and
  the servers answer with different latencies (so completions arrive in other orders);
* separate run directories, separate stores, nothing shared.

Both splits are compared row for row (``rl`` and ``sft``, every config), and a build
cut into two shards (``--shards 2`` through the CLI) against the single process.
A sample asked for alone (a resume after a failure) gets the seed it had among its
siblings, so it comes back as the same draw.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from buildkit import PAPER_MODELS, paper_profile_file, rows
from faultproxy import FaultServer
from oracle import oracle_reply

from fineproofs.cli import cli
from fineproofs.config import load_profile
from fineproofs.engines.base import Completion, Engine, GenerationRequest, SamplingParams
from fineproofs.generation import CachedGenerator, sample_seed
from fineproofs.pipelines.build import Build
from fineproofs.store import ResponseStore

N_PROBLEMS = 14
K = 4  # student rollouts per problem
ROLES = ("student", "judge", "rubric_writer", "teacher", "grader")


def _problem(i: int, variant: str = "") -> dict:
    return {
        "problem": f"Problem {i}. Let $n \\ge {i + 2}$ be an integer. Prove that $n^{{{i + 3}}} - n$ is divisible "
        f"by ${i + 2}$ whenever the {['chord', 'tangent', 'median', 'lattice'][i % 4]} configuration of "
        f"case {i} holds{variant}.",
        "solution": f"Reduce modulo ${i + 2}$ and use the {['parity', 'invariant', 'bound'][i % 3]} "
        f"argument of case {i}; the claim follows.",
        "answer": "proof",
        "problem_type": "Number Theory",
        "question_type": "proof",
        "problem_is_valid": "Yes",
        "solution_is_valid": "Yes",
        "source": "olympiads",
        "competition": f"Determinism Open {i % 3}",
    }


def _write_sources(folder: Path) -> list[str]:
    """Two JSONL files that share problems: exact duplicates with other solutions and
    competitions, so dedup has to choose which copy to keep."""
    folder.mkdir(parents=True)
    a = [_problem(i) for i in range(N_PROBLEMS)]
    b = [_problem(i) for i in range(0, N_PROBLEMS, 3)]
    for r in b:
        r["solution"] = "Another solution: " + r["solution"]
        r["competition"] = "Elsewhere"
    for name, recs in (("first.jsonl", a), ("second.jsonl", b)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return [str(folder / "first.jsonl"), str(folder / "second.jsonl")]


def _servers(latency: float, slots: int) -> dict[str, FaultServer]:
    return {
        r: FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=latency * (1 + i), max_concurrency=slots)
        for i, r in enumerate(ROLES)
    }


def _profile(tmp: Path, servers: dict[str, FaultServer], sources: list[str], build: dict, concurrency: int) -> Path:
    urls = {r: s.url for r, s in servers.items()}
    overrides = {
        "sources": {"paths": sources},
        "decontamination": {"benchmarks": [], "required": False},
        "build": build,
        **{r: {"engine": {"max_concurrency": concurrency}} for r in ROLES},
    }
    return paper_profile_file(tmp, urls["student"], student_samples=K, role_urls=urls, overrides=overrides)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")


def _build_both(tmp: Path, sources: list[str], build: dict, concurrency: int, latency: float) -> Path:
    tmp.mkdir(parents=True)
    servers = _servers(latency, slots=concurrency)
    for s in servers.values():
        s.start()
    try:
        prof = load_profile(str(_profile(tmp, servers, sources, build, concurrency)))
        for split in ("rl", "sft"):
            res = Build(prof, tmp / split, split, progress=False).run()
            assert res.generated > 0 and res.rows["default"] > 0
    finally:
        for s in servers.values():
            s.stop()
    return tmp


def test_two_fresh_builds_write_the_same_rows(tmp_path):
    a = _build_both(
        tmp_path / "a",
        _write_sources(tmp_path / "here" / "sources"),
        {"overlap": "on", "chunk_problems": 3, "inflight_chunks": 3, "prefetch_chunks": 1},
        concurrency=16,
        latency=0.002,
    )
    b = _build_both(
        tmp_path / "b",
        list(reversed(_write_sources(tmp_path / "somewhere" / "else" / "copy"))),
        {"overlap": "on", "chunk_problems": 5, "inflight_chunks": 2, "prefetch_chunks": 2},
        concurrency=3,
        latency=0.01,
    )
    for split in ("rl", "sft"):
        ra, rb = rows(a / split), rows(b / split)
        assert ra and all(ra.values()), split
        assert ra == rb, split  # same rows, in the same order
        pa = (a / split / "problems" / "problems.jsonl").read_text()
        assert pa == (b / split / "problems" / "problems.jsonl").read_text()
        assert str(tmp_path) not in pa  # no absolute source path in what the build asks or keeps
        for f in ("quarantine/llm.jsonl", "stages/rubrics.jsonl", "stages/rollout_grades.jsonl"):
            assert (a / split / f).read_bytes() == (b / split / f).read_bytes(), f  # same lines, same order
    # dedup kept the same copy (with the other's solution merged in)
    first = json.loads((a / "rl" / "problems" / "problems.jsonl").read_text().splitlines()[0])
    assert first["url"].startswith(("first.jsonl#", "second.jsonl#"))


def test_two_shards_write_the_single_process_rows(tmp_path):
    sources = _write_sources(tmp_path / "sources")
    servers = _servers(0.002, slots=8)
    for s in servers.values():
        s.start()
    try:
        build = {"overlap": "on", "chunk_problems": 4, "inflight_chunks": 2}
        profile = _profile(tmp_path, servers, sources, build, concurrency=8)
        single = tmp_path / "single"
        Build(load_profile(str(profile)), single, "rl", progress=False).run()
        sharded = tmp_path / "sharded"
        res = CliRunner().invoke(
            cli,
            ["build", "--split", "rl", "--profile", str(profile), "--output", str(sharded), "--no-progress"]
            + ["--shards", "2"],
        )
        assert res.exit_code == 0, res.output
    finally:
        for s in servers.values():
            s.stop()
    assert rows(single) and rows(sharded) == rows(single)


class _Recording(Engine):
    """Answers every sample with its seed and remembers what it was asked."""

    model_id = "recording"
    revision = "r1"

    def __init__(self):
        self.asked: list[tuple[int, list[int]]] = []

    def generate(self, requests):
        for i, r in enumerate(requests):
            self.asked.append((r.n, list(r.seeds)))
            yield i, [Completion(f"seed {s}") for s in r.seeds]


def test_a_sample_alone_gets_the_seed_it_had_among_its_siblings(tmp_path):
    """Seeds are a function of (request, sample index) only: consecutive within a request,
    so a server that draws choice i with seed s + i (vLLM) draws the same sample either
    way; a failed sample in the middle is asked for alone with its own seed."""
    req = GenerationRequest([{"role": "user", "content": "prove it"}], 5, SamplingParams(seed=3))
    with ResponseStore(tmp_path / "a.sqlite") as store:
        eng = _Recording()
        gen = CachedGenerator(eng, store, progress=False)
        (together,) = gen.run([req], stage="s", prompt_version="v")
        base = gen.key(req, "v", 0)
        assert eng.asked == [(5, [sample_seed(base, j) for j in range(5)])]
        assert [r.text for r in together] == [f"seed {sample_seed(base, j)}" for j in range(5)]
        assert [sample_seed(base, j) - sample_seed(base, 0) for j in range(5)] == list(range(5))
    with ResponseStore(tmp_path / "b.sqlite") as store:  # samples 1 and 3 failed once, then asked alone
        eng = _Recording()
        gen = CachedGenerator(eng, store, progress=False)
        seeds = [sample_seed(base, j) for j in range(5)]
        store.put_many(
            [
                (
                    _stored(gen, req, j, ok=j not in (1, 3)),
                    {"messages": req.messages, "prefill": "", "sampling": {}, "prompt_version": "v"},
                )
                for j in range(5)
            ]
        )
        (again,) = gen.run([req], stage="s", prompt_version="v")
        assert sorted(eng.asked) == [(1, [seeds[1]]), (1, [seeds[3]])]
        assert [r.text for r in again] == [r.text for r in together]
        # a later attempt's samples (first_sample) continue the same seed sequence
        eng.asked.clear()
        gen.run([req], stage="s", prompt_version="v", first_sample=7)
        assert eng.asked == [(5, [sample_seed(base, 7 + j) for j in range(5)])]


def _stored(gen: CachedGenerator, req: GenerationRequest, j: int, ok: bool):
    from fineproofs.store import StoredResponse

    c = (
        Completion(f"seed {sample_seed(gen.key(req, 'v', 0), j)}")
        if ok
        else Completion("", "error", status="failed", reason="http_503")
    )
    return StoredResponse.from_completion(c, key=gen.key(req, "v", j), stage="s", model=gen.engine.model_id)


def test_copies_of_sources_elsewhere_give_location_free_urls(tmp_path):
    from fineproofs.pipelines.sources.reader import resolve_sources

    a = resolve_sources(_write_sources(tmp_path / "x" / "src"))
    shutil.copytree(tmp_path / "x" / "src", tmp_path / "y" / "other")
    b = resolve_sources([str(tmp_path / "y" / "other")])
    assert [s.display for s in a] == ["first.jsonl", "second.jsonl"]
    assert [s.display for s in b] == ["other/first.jsonl", "other/second.jsonl"]
    # the same name twice: their paths tell them apart
    (tmp_path / "z").mkdir()
    shutil.copy(tmp_path / "x" / "src" / "first.jsonl", tmp_path / "z" / "first.jsonl")
    c = resolve_sources([str(tmp_path / "x" / "src" / "first.jsonl"), str(tmp_path / "z" / "first.jsonl")])
    assert len({s.display for s in c}) == 2
