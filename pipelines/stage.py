"""The Stage protocol every LLM stage implements, and the build's one bookkeeping helper.

A problem travels through the LLM stages as one :class:`Work` item (like a
datatrove ``Document``): each stage adds its piece (a rubric, proofs, grades, a
difficulty) and passes the item on. A stage's ``run`` consumes an iterable of
items and yields every item back, interleaved with :class:`Failed` records (an
item key and a reason) for what it could not produce. Stages work in bounded
chunks (:attr:`LLMStage.chunk`), so items stream through a chain of stages and no
stage needs the whole corpus at once.

:class:`Recorder` does the bookkeeping the same way for every stage: counts of
results, failures by reason kind, the stage file ``stages/<name>.jsonl`` and the
quarantine file, all written incrementally.
"""

from __future__ import annotations

import collections
import itertools
import json
import queue
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from fineproofs import rundir
from fineproofs.records import Difficulty, Grade, Problem, ProofSample, Rubric, reason_kind, reward_std

__all__ = ["Difficulty", "reward_std"]  # they live with the records; imported from here before

# the grain of streaming: problems per engine call
DEFAULT_CHUNK = 256


@dataclass
class Work:
    """One problem on its way through the LLM stages."""

    problem: Problem
    rubric: Rubric | None = None
    rubric_attempts: int = 0
    rollouts: list[ProofSample] = field(default_factory=list)
    rollout_grades: dict[str, Grade] = field(default_factory=dict)  # sample key -> valid grade
    rollout_failures: dict[str, str] = field(default_factory=dict)  # sample key -> reason
    proofs: list[ProofSample] = field(default_factory=list)  # teacher distillation
    proof_grades: dict[str, Grade] = field(default_factory=dict)
    proof_failures: dict[str, str] = field(default_factory=dict)
    difficulty: Difficulty | None = None

    @property
    def id(self) -> str:
        return self.problem.id

    @property
    def dropped(self) -> bool:
        """A stage of the build decided against this problem (e.g. the problem filter):
        later stages pass it on untouched."""
        return any(not d.kept for d in self.problem.decisions)


@dataclass(frozen=True)
class Failed:
    """An item a stage could not produce, with its reason (``kind: detail``)."""

    key: str
    reason: str

    @property
    def kind(self) -> str:
        return reason_kind(self.reason)


class Tally(Counter):
    """What a stage decided by rule, counted apart (the Recorder reports it beside the
    stage's counts); safe to add to from the stage's chunk threads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self[key] += n


class Stage(Protocol):
    """One step of the build: ``run`` yields every input item back, plus a
    :class:`Failed` for each thing it could not produce. ``records`` is what the
    stage adds to its file for one item (its results, counted): the lines
    (``to_dict()``) of ``record``, the type registered for ``name`` in
    :data:`fineproofs.rundir.STAGE_FILES` (which names the file, ``stages/<name>.jsonl``)."""

    name: str
    record: type  # what ``records`` returns (a :class:`fineproofs.records.StageRecord`)
    key_name: str  # what a Failed's key is ("problem_id" or "sample")

    def run(self, items: Iterable[Work]) -> Iterator[Work | Failed]: ...

    def records(self, work: Work) -> list[dict[str, Any]]: ...


class LLMStage:
    """Base of the LLM stages: feeds :meth:`process` bounded chunks of items.

    With ``inflight > 1`` up to that many chunks are processed at once (threads), so the
    next chunk's requests reach the server while the current chunk's last replies come
    back: no barrier at chunk ends. Outputs keep the input order either way."""

    name = ""
    record: type = dict  # a subclass names its record type (registered in rundir.STAGE_FILES)
    key_name = "sample"
    chunk = DEFAULT_CHUNK
    inflight = 1

    def run(self, items: Iterable[Work]) -> Iterator[Work | Failed]:
        it = iter(items)
        chunks = iter(lambda: list(itertools.islice(it, self.chunk)), [])
        if self.inflight <= 1:
            for chunk in chunks:
                yield from self.process(chunk)
            return
        with ThreadPoolExecutor(self.inflight, thread_name_prefix=f"stage-{self.name}") as pool:
            pending: collections.deque = collections.deque()
            for chunk in chunks:
                pending.append(pool.submit(lambda c: list(self.process(c)), chunk))
                if len(pending) >= self.inflight:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:  # pragma: no cover - abstract
        raise NotImplementedError

    def records(self, work: Work) -> list[dict[str, Any]]:
        return []


def as_dicts(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in records]


class Recorder:
    """Counts, failures by reason, stage files and quarantine: one way for every stage."""

    def __init__(self, out_dir: Path, counts: dict[str, int], dropped: dict[str, dict[str, int]]):
        self.out_dir = Path(out_dir)
        self.counts = counts
        self.dropped = dropped
        self._quarantine: IO[str] | None = None
        # one unnamed temporary file per stage, joined in stage order when the build ends: the
        # quarantine's line order never depends on how the stages' threads interleaved
        self._staged: dict[str, IO[str]] = {}
        self._closers: list[Any] = []

    def __enter__(self) -> Recorder:
        cm = rundir.atomic_write(self.out_dir / rundir.LLM_QUARANTINE)
        self._quarantine = cm.__enter__()
        self._closers.append(cm)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                for part in self._staged.values():
                    part.seek(0)
                    shutil.copyfileobj(part, self._quarantine)
        finally:
            for part in self._staged.values():
                part.close()
            while self._closers:
                self._closers.pop().__exit__(*exc)

    def through(self, stage: Stage, items: Iterable[Work]) -> Iterator[Work]:
        """Run ``stage`` over ``items``, recording as results stream out."""
        if stage.name not in self._staged:  # now, in the order of the calls (a chain runs from its end)
            self._staged[stage.name] = tempfile.TemporaryFile(  # noqa: SIM115  # closed in __exit__
                "w+", encoding="utf-8", dir=self.out_dir / rundir.QUARANTINE
            )
        return self._through(stage, items, self._staged[stage.name])

    def _through(self, stage: Stage, items: Iterable[Work], quarantine: IO[str]) -> Iterator[Work]:
        cm = rundir.atomic_write(rundir.stage(stage.name).path(self.out_dir))
        out = cm.__enter__()
        self._closers.append(cm)
        self.counts.setdefault(stage.name, 0)
        reasons: Counter = Counter()
        for x in stage.run(items):
            if isinstance(x, Failed):
                reasons[x.kind] += 1
                self.dropped[stage.name] = dict(reasons)
                line = json.dumps({"stage": stage.name, stage.key_name: x.key, "reason": x.reason}, ensure_ascii=False)
                quarantine.write(line + "\n")
                continue
            recs = stage.records(x)
            for r in recs:
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
            self.counts[stage.name] += len(recs)
            yield x
        self.dropped.setdefault(stage.name, dict(reasons))
        for k, v in getattr(stage, "tally", {}).items():  # what a stage decided by rule, counted apart
            self.counts[f"{stage.name}: {k}"] = v


def prefetch(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run the iterator ``items`` in a thread of its own, at most ``depth`` items ahead of
    the consumer (backpressure: a fast upstream stage blocks instead of piling up work).
    Chained over the stages, every role works at once: a problem's rollouts go to the
    judge while the student generates the next chunk. An upstream error is re-raised
    here; a consumer that stops early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()
    error: list[BaseException] = []

    def pump() -> None:
        try:
            for x in items:
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # re-raised in the consumer
            error.append(e)
        finally:
            if not stop.is_set():
                q.put(done)

    t = threading.Thread(target=pump, name="fineproofs-stage", daemon=True)
    t.start()
    try:
        while (x := q.get()) is not done:
            yield x
    finally:
        stop.set()
        t.join(timeout=5)
    if error:
        raise error[0]
