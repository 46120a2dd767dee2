"""Progress a person can plan with: where the build is, how long it has run, how long
the current step and the whole build still need.

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
- The build's ETA (:func:`overall`, :func:`build_eta`): the build tells the plan how
  many samples each step asks for in its first round and which role answers them
  (:func:`expect`), and runs each step's stage through :func:`tracked` (which counts
  the problems the step takes in and marks it finished when its output ends). Each
  role's rate is measured like the bar's, after its first batch: samples per second
  of the time the role had a call in flight (so a model reloaded for every chunk is in
  the rate, the first load is not; a judge's rate on its calibration counts for its
  grading). Time left = each unfinished step's samples left / its role's rate, summed;
  steps that run at once (``concurrent``: the build's overlapping stages) count by
  role, the slowest role's sum. Samples already in the store cost nothing. A step
  whose role has no rate yet, or whose size is not known yet, makes the figure a lower
  bound that names it: ``ETA ≥ 3:10 (rollouts: no rate yet)``. ``~`` marks a figure
  that counts on an estimated size: a step's size is the one the build gave it (every
  problem surviving the earlier steps: an upper estimate) until it takes problems in,
  then what it asked per problem so far times the problems still to come, exact once
  it has taken them all. Retry rounds are not foreseen: they add their samples once they start.
- The build line (``build: step 3/5 rollouts, 12:04 elapsed, ETA ~6:30``, at most 80
  columns) is logged when a step starts and ends and every :data:`LOG_EVERY_S` seconds
  in between (a log tailed without a terminal says it too); the bar shows the build's
  figure beside its own when the line still fits 80 columns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WIDTH = 80  # columns a build line (and a bar with the build's ETA) stays within
LOG_EVERY_S = 300.0  # the build line between step boundaries, at most this often
SAME_BATCH_S = 1.0  # completions this close to the first one count as its batch

_lock = threading.RLock()


@dataclass
class _Rate:
    """One role's samples per second of the time it had a call in flight, from the end
    of its first batch on."""

    busy: float = 0.0  # seconds of closed in-flight intervals
    since: float | None = None  # start of the open interval (a call in flight)
    active: int = 0
    n: int = 0  # samples generated
    first: float | None = None  # when the first completion came
    ref: tuple[float, int] | None = None  # (busy, n) at the end of the first batch

    def busy_at(self, now: float) -> float:
        return self.busy + (now - self.since if self.since is not None else 0.0)

    def start(self, now: float) -> None:
        if self.active == 0:
            self.since = now
        self.active += 1

    def end(self, now: float) -> None:
        self.active -= 1
        if self.active == 0 and self.since is not None:
            self.busy += now - self.since
            self.since = None

    def add(self, k: int, now: float) -> None:
        self.n += k
        if self.first is None:
            self.first = now
        if now - self.first < SAME_BATCH_S:  # the first batch pays for the model load: the reference
            self.ref = (self.busy_at(now), self.n)

    def per_s(self, now: float) -> float | None:
        if self.ref is None:
            return None
        dt, dn = self.busy_at(now) - self.ref[0], self.n - self.ref[1]
        return dn / dt if dn > 0 and dt > 0 else None


@dataclass
class _Step:
    name: str
    role: str = ""
    expected: int | None = None  # samples of the first round; None: not known yet
    about: bool = False  # expected counts problems an earlier step may still drop
    stored: int = 0  # its samples in the store when it was sized
    concurrent: bool = False
    problems: int = 0  # problems that will pass through it (0: not known)
    taken: int = 0  # problems it has taken in so far (:func:`tracked`)
    asked: int = 0  # first-round samples its calls have asked for so far
    cached: int = 0  # first-round samples found in the store by this run
    generated: int = 0  # first-round samples generated by this run
    open: dict[int, int] = field(default_factory=dict)  # attempt -> samples in flight
    started: bool = False
    finished: bool = False

    def samples(self) -> float | None:
        """The samples of its first round: once it has taken problems in, what it asked for
        them and as much again per problem for those still to come (the problems an earlier
        step dropped ask for nothing); before, the size the build gave."""
        if self.taken and self.problems:
            return self.asked + self.asked / self.taken * max(0, self.problems - self.taken)
        return self.expected

    @property
    def estimated(self) -> bool:
        return self.about and not (self.problems and self.taken >= self.problems)

    def left(self) -> float | None:
        """Samples still to generate (None: not sized and not started)."""
        if self.finished:
            return 0
        retries = sum(v for a, v in self.open.items() if a)
        if (samples := self.samples()) is None:
            return sum(self.open.values()) if self.started else None
        return max(0, samples - max(self.stored, self.cached) - self.generated) + retries


@dataclass
class _Estimate:
    seconds: float
    about: bool
    missing: list[tuple[str, str]]  # (step, "no rate yet"/"not sized yet") making it a lower bound
    done: bool  # every planned step has ended


class Plan:
    """The steps of one build and what has been measured of them."""

    def __init__(self, steps: list[str], started: float | None = None, clock_fn: Callable[[], float] = time.time):
        self.clock = clock_fn
        self.started = clock_fn() if started is None else started
        self.steps: dict[str, _Step] = {s: _Step(s) for s in dict.fromkeys(steps)}
        self.rates: dict[str, _Rate] = {}
        self.logged = self.started  # when the build line was last logged

    def position(self, stage: str) -> tuple[int, int]:
        names = list(self.steps)
        return (names.index(stage) + 1 if stage in self.steps else 0), len(names)

    def role(self, stage: str) -> str:
        st = self.steps.get(stage)
        return st.role if st is not None and st.role else stage

    def estimate(self, now: float) -> _Estimate:
        serial, by_role, about, missing = 0.0, {}, False, []
        for st in self.steps.values():
            left = st.left()
            if left is None:
                missing.append((st.name, "not sized yet"))
                continue
            if left <= 0:
                continue
            rate = self.rates.get(st.role or st.name)
            per_s = rate.per_s(now) if rate is not None else None
            if per_s is None:
                missing.append((st.name, "no rate yet"))
                continue
            about |= st.estimated
            if st.concurrent:
                by_role[st.role] = by_role.get(st.role, 0.0) + left / per_s
            else:
                serial += left / per_s
        done = all(st.finished for st in self.steps.values())
        return _Estimate(serial + max(by_role.values(), default=0.0), about, missing, done)

    def eta(self, now: float, short: bool = False) -> str:
        """``ETA ~6:30``, ``ETA ≥ 3:10 (rollouts: no rate yet)``; ``short``: the bar's
        form without the reason (``build ~6:30``, ``build ≥3:10``, or empty)."""
        return self._etas(now, short)[0]

    def _etas(self, now: float, short: bool = False) -> list[str]:
        """The ETA's forms, longest first (shorter ones name fewer of the steps that make it
        a lower bound)."""
        e = self.estimate(now)
        if e.done:
            return ["" if short else "all steps done"]
        if not e.missing:
            return [f"{'build' if short else 'ETA'} {'~' if e.about else ''}{clock(e.seconds)}"]
        if short:
            return [f"build ≥{clock(e.seconds)}" if e.seconds >= 1 else ""]
        bound = f"ETA ≥ {clock(e.seconds)}" if e.seconds >= 1 else "no ETA yet"
        (name, why), more = e.missing[0], len(e.missing) - 1
        why = why if all(w == why for _, w in e.missing) else "not known yet"
        forms = [f"{bound} ({name}{f' +{more}' if more else ''}: {why})"]
        if more:
            forms.append(f"{bound} ({more + 1} steps: {why})")
        return [*forms, bound]

    def line(self, stage: str, attempt: int = 0, event: str = "", now: float | None = None) -> str:
        """The build line, at most :data:`WIDTH` columns: what would not fit goes, in this
        order: the names in the reason of a lower bound, the reason, the stage's name."""
        now = self.clock() if now is None else now
        pos, n = self.position(stage)
        tail = (f" retry {attempt}" if attempt else "") + (f" {event}" if event else "")
        step = (f"step {pos}/{n} {stage}" if pos else stage) + tail
        short = f"step {pos}/{n}{tail}" if pos else step
        elapsed = clock(now - self.started)
        etas = self._etas(now)
        for text, eta in [*((step, e) for e in etas), *((short, e) for e in etas)]:
            line = f"build: {text}, {elapsed} elapsed, {eta}"
            if len(line) <= WIDTH:
                return line
        return line[:WIDTH]


_plan: Plan | None = None  # the build running in this process


@contextmanager
def build_plan(
    steps: list[str], started: float | None = None, clock_fn: Callable[[], float] = time.time
) -> Iterator[Plan]:
    """Declare the build's LLM steps (more may be added with :func:`add_steps`) for the
    duration of the block; ``started``: the build's start (``clock_fn()``), default now."""
    global _plan
    with _lock:
        saved, _plan = _plan, Plan(steps, started, clock_fn)
        plan = _plan
    try:
        yield plan
    finally:
        with _lock:
            _plan = saved


def start(steps: list[str], started: float | None = None, clock_fn: Callable[[], float] = time.time) -> None:
    """Declare a build's first LLM steps (the build calls :func:`stop` when it ends)."""
    global _plan
    with _lock:
        _plan = Plan(steps, started, clock_fn)


def stop() -> None:
    """The build ended: labels are bare stage names again."""
    global _plan
    with _lock:
        _plan = None


def add_steps(steps: list[str]) -> None:
    """Append steps (in order) that are not planned yet; no effect outside a build."""
    with _lock:
        if _plan is not None:
            for s in dict.fromkeys(steps):
                _plan.steps.setdefault(s, _Step(s))


def expect(
    step: str,
    role: str,
    samples: int | None = None,
    *,
    about: bool = False,
    stored: int = 0,
    concurrent: bool = False,
    problems: int = 0,
) -> None:
    """Size a planned step for the build's ETA: ``role`` answers it, its first round asks
    for ``samples`` (None: learnt from its calls once it starts), ``about``: an upper
    estimate (an earlier step may drop problems), ``stored``: how many of its samples the
    store holds already (they cost nothing), ``concurrent``: it runs at the same time as
    the other concurrent steps, ``problems``: how many problems pass through it (with
    :func:`tracked`, its size is then learnt from what it asks per problem taken in). No
    effect outside a build or for a step not planned."""
    with _lock:
        st = _plan.steps.get(step) if _plan is not None else None
        if st is not None:
            st.role, st.expected, st.about, st.stored = role, samples, about, stored
            st.concurrent, st.problems = concurrent, problems


def finished(*steps: str) -> None:
    """These steps have ended (nothing of theirs is left, whatever they were sized at);
    the build line says so."""
    lines = []
    with _lock:
        for step in steps:
            st = _plan.steps.get(step) if _plan is not None else None
            if st is not None and not st.finished:
                st.finished = True
                lines.append(_plan.line(step, event="done"))
                _plan.logged = _plan.clock()
    for line in lines:
        log.info("%s", line)


def tracked(step: str | None, items: Iterable, run: Callable[[Iterable], Iterable]) -> Iterator:
    """``run(items)``, the stage of planned step ``step`` over the problems ``items``,
    counting the problems it takes in (see :func:`expect`), then :func:`finished` (``step``)
    once its output is exhausted. ``step`` None: ``run(items)`` as it is."""
    if step is None:
        yield from run(items)
        return

    def taken() -> Iterator:
        for x in items:
            with _lock:
                st = _plan.steps.get(step) if _plan is not None else None
                if st is not None:
                    st.taken += 1
            yield x

    yield from run(taken())
    finished(step)


def asked(stage: str, total: int, missing: int, attempt: int = 0) -> None:
    """A call of ``stage`` asks for ``total`` samples, ``missing`` of them not in the store
    (the cached ones count as done). The step's first call logs the build line."""
    with _lock:
        st = _plan.steps.get(stage) if _plan is not None else None
        if st is None:
            return
        if not attempt:
            st.asked += total
            st.cached += total - missing
        first, st.started = not st.started, True
        line = _plan.line(stage, attempt) if first else None
        if first:
            _plan.logged = _plan.clock()
    if line:
        log.info("%s", line)


def build_eta() -> str:
    """The build's ETA as the build line says it when it fits (empty outside a build)."""
    with _lock:
        return _plan.eta(_plan.clock()) if _plan is not None else ""


def overall(stage: str, attempt: int = 0) -> str:
    """The build line for ``stage`` (``stage`` itself outside a build)."""
    with _lock:
        return _plan.line(stage, attempt) if _plan is not None else label(stage, attempt)


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def label(stage: str, attempt: int = 0) -> str:
    """``step 3/5 rubrics`` (``retry 1`` appended for a retry round); the bare stage name
    outside a build or for a stage the build did not plan."""
    with _lock:
        pos, n = _plan.position(stage) if _plan is not None else (0, 0)
    text = f"step {pos}/{n} {stage}" if pos else stage
    return f"{text} retry {attempt}" if attempt else text


def where(stage: str, attempt: int = 0) -> str:
    """:func:`label` plus the build's elapsed time, for log lines."""
    with _lock:
        elapsed = _plan.clock() - _plan.started if _plan is not None else None
    base = label(stage, attempt)
    return f"{base} (build running {clock(elapsed)})" if elapsed is not None else base


class StepBar:
    """A tqdm bar for one call of a step whose ETA ignores the first completion (model
    load, warm-up) and the completions of its batch (those within ``SAME_BATCH_S``):
    time left = samples left / rate measured since then. It reports the call to the
    build's plan (the role's rate, the step's samples) and shows the build's ETA too
    when the line fits :data:`WIDTH` columns."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
    SAME_BATCH_S = SAME_BATCH_S
    MIN_BAR = 10  # columns the bar itself keeps

    def __init__(self, total: int, stage: str, attempt: int = 0, disable: bool = False, clock_fn=time.monotonic):
        from tqdm.auto import tqdm

        self.total = total
        self.n = 0
        self.stage = stage
        self.attempt = attempt
        self._clock = clock_fn
        self._first: tuple[float, int] | None = None  # (time, samples) at the first completion
        self._closed = False
        self.desc = label(stage, attempt)
        with _lock:
            self._plan = plan = _plan  # the build this call belongs to
            self._role = plan.role(stage) if plan is not None else stage  # whose rate it measures
            if plan is not None:
                plan.rates.setdefault(self._role, _Rate()).start(plan.clock())
                st = plan.steps.get(stage)
                if st is not None:
                    st.open[attempt] = st.open.get(attempt, 0) + total
        self.bar = tqdm(
            total=total, desc=self.desc, unit="sample", disable=disable, leave=False, bar_format=self.FORMAT
        )
        self.bar.set_postfix_str(self.eta(), refresh=False)

    def update(self, k: int) -> None:
        now = self._clock()
        self.n += k
        if self._first is None or now - self._first[0] < self.SAME_BATCH_S:
            # the first completion, and those that come with it (an in-process engine returns
            # a whole batch at once): the reference point of the rate
            self._first = (now if self._first is None else self._first[0], self.n)
        line, build = None, ""
        with _lock:
            if (plan := self._plan) is not None:
                t = plan.clock()
                plan.rates[self._role].add(k, t)
                st = plan.steps.get(self.stage)
                if st is not None:
                    st.open[self.attempt] = max(0, st.open.get(self.attempt, 0) - k)
                    st.generated += 0 if self.attempt else k
                build = plan.eta(t, short=True)
                if t - plan.logged >= LOG_EVERY_S:
                    line, plan.logged = plan.line(self.stage, self.attempt, now=t), t
        self.bar.update(k)
        self.bar.set_postfix_str(self.postfix(self.eta(now), build))
        if line:
            log.info("%s", line)

    def postfix(self, eta: str, build: str) -> str:
        """``eta``, and ``build`` beside it when the bar's line still fits :data:`WIDTH`."""
        with_build = f"{eta}, {build}" if build else eta
        fixed = f"{self.desc}: 100%|| {self.total}/{self.total} [00:00:00, {with_build}]"
        return with_build if len(fixed) + self.MIN_BAR <= WIDTH else eta

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
        if not self._closed:
            self._closed = True
            with _lock:
                if (plan := self._plan) is not None:
                    plan.rates[self._role].end(plan.clock())
                    st = plan.steps.get(self.stage)
                    if st is not None:  # what the call did not get back (an engine error) is no longer in flight
                        st.open[self.attempt] = max(0, st.open.get(self.attempt, 0) - (self.total - self.n))
        self.bar.close()
