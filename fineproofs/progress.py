"""Progress a person can plan with: where the build is, how long it has run, how long
the current step still needs.

- A build declares its LLM steps in order (:func:`build_plan`, :func:`add_steps`): the
  response-store stage names (``calibrate_judge``, ``rubrics``, ``rollouts``,
  ``grade_judge``, ...). Every log line and progress bar of a step then carries
  ``step i/n`` and the build's elapsed time (:func:`label`, :func:`where`). Outside a
  build (``fineproofs calibrate``, tests) the labels are the bare stage names.
- A retry round (the same step asking again for the samples whose replies were
  rejected) is labelled ``retry k``, so it never reads as the step starting over.
- :class:`StepBar` estimates the time left from the rate measured **after** the first
  completion: the first completion of a step pays for loading the model and warming up
  the engine, and an ETA that includes it is minutes off on a small run. Until a second
  completion arrives the bar says so instead of guessing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_plan: list[str] = []
_started: float | None = None


@contextmanager
def build_plan(steps: list[str], started: float | None = None) -> Iterator[None]:
    """Declare the build's LLM steps (more may be added with :func:`add_steps`) for the
    duration of the block; ``started``: the build's start (``time.time()``), default now."""
    global _started
    with _lock:
        saved = (list(_plan), _started)
        _plan[:] = list(dict.fromkeys(steps))
        _started = time.time() if started is None else started
    try:
        yield
    finally:
        with _lock:
            _plan[:], _started = saved


def start(steps: list[str], started: float | None = None) -> None:
    """Declare a build's first LLM steps (the build calls :func:`stop` when it ends)."""
    global _started
    with _lock:
        _plan[:] = list(dict.fromkeys(steps))
        _started = time.time() if started is None else started


def stop() -> None:
    """The build ended: labels are bare stage names again."""
    global _started
    with _lock:
        _plan.clear()
        _started = None


def add_steps(steps: list[str]) -> None:
    """Append steps (in order) that are not planned yet; no effect outside a build."""
    with _lock:
        if _started is None:
            return
        _plan.extend(s for s in dict.fromkeys(steps) if s not in _plan)


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def label(stage: str, attempt: int = 0) -> str:
    """``step 3/5 rubrics`` (``retry 1`` appended for a retry round); the bare stage name
    outside a build or for a stage the build did not plan."""
    with _lock:
        pos = _plan.index(stage) + 1 if stage in _plan else 0
        n = len(_plan)
    text = f"step {pos}/{n} {stage}" if pos else stage
    return f"{text} retry {attempt}" if attempt else text


def where(stage: str, attempt: int = 0) -> str:
    """:func:`label` plus the build's elapsed time, for log lines."""
    with _lock:
        started = _started
    base = label(stage, attempt)
    return f"{base} (build running {clock(time.time() - started)})" if started is not None else base


class StepBar:
    """A tqdm bar for one call of a step whose ETA ignores the first completion (model
    load, warm-up) and the completions of its batch (those within ``SAME_BATCH_S``):
    time left = samples left / rate measured since then."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
    SAME_BATCH_S = 1.0  # completions this close to the first one count as its batch

    def __init__(self, total: int, stage: str, attempt: int = 0, disable: bool = False, clock_fn=time.monotonic):
        from tqdm.auto import tqdm

        self.total = total
        self.n = 0
        self._clock = clock_fn
        self._first: tuple[float, int] | None = None  # (time, samples) at the first completion
        self.bar = tqdm(
            total=total, desc=label(stage, attempt), unit="sample", disable=disable, leave=False, bar_format=self.FORMAT
        )
        self.bar.set_postfix_str(self.eta(), refresh=False)

    def update(self, k: int) -> None:
        now = self._clock()
        self.n += k
        if self._first is None or now - self._first[0] < self.SAME_BATCH_S:
            # the first completion, and those that come with it (an in-process engine returns
            # a whole batch at once): the reference point of the rate
            self._first = (now if self._first is None else self._first[0], self.n)
        self.bar.update(k)
        self.bar.set_postfix_str(self.eta(now))

    def eta(self, now: float | None = None) -> str:
        """``ETA 1:15`` from the measured rate, or what is still missing to measure it."""
        if self._first is None:
            return "ETA after 1st batch"  # the first pays for the model load: not a rate
        t0, n0 = self._first
        dt, dn = (self._clock() if now is None else now) - t0, self.n - n0
        if self.n >= self.total:
            return "done"
        if dn <= 0 or dt <= 0:
            return "ETA after next batch"
        return f"ETA {clock((self.total - self.n) * dt / dn)}"

    def close(self) -> None:
        self.bar.close()
