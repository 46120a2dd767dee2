"""``fineproofs build``: problems → rubrics → proofs → grades → split.

The build is an ordered list of :mod:`stages <fineproofs.pipelines.stage>` through
which every problem streams as a :class:`~fineproofs.pipelines.stage.Work` item, and
one :class:`~fineproofs.pipelines.stage.Recorder` that keeps counts, stage files and
quarantine for all of them. Run directory layout (``--output``)::

    README.md, profile.yaml        dataset card (the recipe's card, fineproofs.cards) and the exact profile used
    data/<config>/train-*.parquet  the split, in the Hub layout
    store.sqlite                   every LLM completion (durable; re-runs reuse it)
    problems/problems.jsonl        the ingested problem set
    quarantine/*.jsonl             everything dropped, with its reason
    stages/*.jsonl                 intermediate records of each LLM stage
    build.json                     counts, timings, generation statistics, what the card needs

Every LLM stage goes through the response store, so a re-run of a finished build
performs zero generations and reproduces the same rows (completions that failed at
the engine, e.g. a server that stayed down, are stored as failures and retried by
the next run; those are the only requests a re-run sends).

The exit contract: a build ends complete (the split, ``build.json``, exit 0), or
incomplete (:class:`~fineproofs.errors.IncompleteBuild`, exit 3) when any item failed
for a transient reason (the engine's retry budget ran out, a reply was empty): no
split, card or ``build.json`` is written from it, and the same command finishes it,
asking again only for what failed, under the same sample indices, so the finished
rows are those of a fault-free build. Deliberate drops (unparseable replies after
their attempts, the problem filter, the split's policy) are properties of the data
and end complete. One process writes a run directory at a time (:func:`rundir.locked`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib.util
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from fineproofs import progress, rundir
from fineproofs.cards.card import write_card
from fineproofs.config import Profile, public_yaml
from fineproofs.engines import EnginePool
from fineproofs.errors import (
    ConfigError,
    DataError,
    EngineError,
    IncompleteBuild,
    incomplete_counts,
    incomplete_message,
)
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.calibration import expand_path
from fineproofs.pipelines.recipes import RECIPES, Recipe, recipe
from fineproofs.pipelines.splits import SplitInputs, read_inputs
from fineproofs.pipelines.stage import Recorder, Stage, Work, prefetch
from fineproofs.records import reason_kind
from fineproofs.rubric import rubric_hash
from fineproofs.store import ResponseStore

log = logging.getLogger(__name__)

SPLITS = tuple(RECIPES)
INGEST_COUNTS = ("read", "parsed", "clean", "classified", "dedup", "decontaminated", "limit")


@dataclass
class BuildResult:
    out_dir: Path
    split: str
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0
    card: Path | None = None
    decontaminated: bool = False
    calibration: dict = field(default_factory=dict)  # per judging role: figures against human grades
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)  # transient failures, stage -> kind -> n


def roles_of(split: str, profile: Profile) -> list[str]:
    """The roles a build of ``split`` with ``profile`` talks to."""
    return recipe(split).roles_of(profile)


def preflight(profile: Profile, split: str) -> None:
    """Fail early, naming the server each role needs, before any work is done."""
    problems = []
    for role in roles_of(split, profile):
        eng = getattr(profile, role).engine
        if eng.kind == "http":
            from fineproofs.engines import make_engine

            engine = make_engine(eng)
            try:
                engine.preflight()
            except EngineError as e:
                problems.append(f"- {role} ({eng.model}): {e}")
            finally:
                engine.close()
        elif eng.kind == "vllm" and importlib.util.find_spec("vllm") is None:  # not imported: slow, GPU-bound
            problems.append(
                f"- {role} ({eng.model}) runs on in-process vLLM, which is not installed: "
                "`pip install 'fineproofs[vllm]'` on a GPU machine, or set "
                f"{role}.engine.kind: http with the endpoints of a running `vllm serve {eng.model}`"
            )
    if problems:
        raise EngineError(f"profile {profile.name!r} cannot run here:\n" + "\n".join(problems))


def shard_dir(out_dir: Path, index: int, count: int) -> Path:
    return Path(out_dir) / rundir.SHARDS / f"{index:05d}-of-{count:05d}"


def in_shard(problem_id: str, index: int, count: int) -> bool:
    """Problems are split across shards by a hash of their id: stable, balanced, disjoint."""
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) % count == index


class Build:
    """One build of one split into one run directory. ``limit`` and ``benchmarks``
    fold into the profile here; everything downstream reads only the profile.

    With ``shard=(i, n)`` only the problems of shard ``i`` of ``n`` go through the LLM
    stages, into ``OUTPUT/shards/<i>-of-<n>/`` (own store, stage files, quarantine):
    shards run anywhere (a Slurm array, Ray tasks), each resumes on its own, and
    :func:`merge_shards` then writes the split and its manifest from all of them."""

    def __init__(
        self,
        profile: Profile,
        out_dir: str | Path,
        split: str | Recipe = "rl",
        *,
        benchmarks: list[str] | None = None,
        limit: int | None = None,
        progress: bool = True,
        executor: str | None = None,
        shard: tuple[int, int] | None = None,
        allow_incomplete: bool = False,
    ):
        self.recipe: Recipe = recipe(split)
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ConfigError(f"shard {shard[0]} of {shard[1]} does not exist: use 0..{shard[1] - 1} of {shard[1]}")
        self.profile = profile.with_overrides(limit=limit, benchmarks=benchmarks, executor=executor)
        self.out_dir = Path(out_dir)
        self.split = self.recipe.name
        self.progress = progress
        self.shard = shard
        # write the split even when items failed for transient reasons (marked incomplete in
        # build.json and the card); without it such a build writes no split
        self.allow_incomplete = allow_incomplete
        self.work_dir = shard_dir(self.out_dir, *shard) if shard else self.out_dir
        self._gens: list[CachedGenerator] = []

    def stages(self, gen) -> list[Stage]:
        """The ordered LLM stages of this split (its recipe's); ``gen(role)`` gives a role's generator."""
        p = self.profile
        stages = self.recipe.stages(p, gen)
        for st in stages:
            st.chunk = p.build.chunk_problems
            st.inflight = p.build.inflight_chunks if self.overlap else 1
        return stages

    @property
    def overlap(self) -> bool:
        b = self.profile.build
        if b.overlap != "auto":
            return b.overlap == "on"
        return all(getattr(self.profile, r).engine.kind == "http" for r in self.recipe.roles_of(self.profile))

    def run(self) -> BuildResult:
        """Ingest, then every problem through the LLM stages, then (unless this is one
        shard of several) the split, ``build.json`` and the card: the run directory the
        command line writes."""
        t0 = time.time()
        d = self.profile.decontamination
        if d.required and not d.benchmarks:
            raise ConfigError(
                f"profile {self.profile.name!r} must be decontaminated and names no benchmark files: pass "
                "--benchmarks FILE (e.g. the IMO-ProofBench CSV) or set decontamination.benchmarks; "
                "--allow-contaminated builds without (the card then says so)"
            )
        rundir.claim(self.out_dir)
        rundir.check_split(self.out_dir, self.split)
        with rundir.locked(self.work_dir):  # one writer per run directory (per shard directory)
            preflight(self.profile, self.split)
            return self._run(t0)

    def _llm_steps(self) -> list[str]:
        """The response-store stages of this split that ask a model, in order (as ``stages``
        builds them), for the progress lines' "step i/n" from the start of the build."""
        return self.recipe.steps(self.profile)

    def _expect(self, stages: list[Stage], problems: int, store: ResponseStore) -> None:
        """Size the LLM steps for the build's ETA (:func:`fineproofs.progress.expect`): the
        samples each asks for in its first round, ``problems`` times its samples per problem
        (an upper estimate after the first step: an earlier step may drop problems, a grader
        skips proofs without an answer; refined from what each asks per problem once it has
        started), and the role that answers them."""
        p = self.profile
        per = {"rollouts": p.student_samples, "distill": p.teacher_samples}
        per |= {
            "grade_judge": p.student_samples * p.grading.judges,
            "grade_grader": p.teacher_samples * p.grading.judges,
        }
        asking = [st for st in stages if step_of(st)]
        for i, st in enumerate(asking):
            step, role = step_of(st), getattr(st, "grader", st).generator.role
            samples, stored = problems * per.get(step, 1), store.count(step, "ok")
            progress.expect(step, role, samples, about=i > 0, stored=stored, concurrent=self.overlap, problems=problems)

    def _calibrated_roles(self) -> list[str]:
        cal = self.profile.grading.calibration
        return [r for r in self.recipe.judging if r in cal and cal[r].file and expand_path(cal[r].file).is_file()]

    def _run(self, t0: float) -> BuildResult:
        if stale := rundir.remove_stale_tmp(self.work_dir):  # a killed run's half-written files
            log.info("removed %d temporary file(s) a previous run left in %s", stale, self.work_dir)
        rundir.write_text(self.out_dir / rundir.PROFILE, public_yaml(self.profile))
        res = BuildResult(self.out_dir, self.split)
        pool = EnginePool()
        store = ResponseStore(self.work_dir / rundir.STORE)
        # the overall "step i/n" of the progress lines; the LLM stages join in _run_stages
        calibrating = [] if self.shard else self._calibrated_roles()
        progress.start([f"calibrate_{r}" for r in calibrating], started=t0)
        for r in calibrating:  # the build's ETA: a judge's rate on its calibration counts for its grading
            progress.expect(f"calibrate_{r}", r)
        progress.add_steps(self._llm_steps())
        try:
            # the judges first: a judge that misses its thresholds stops the build before the expensive stages
            res.calibration = (
                {}
                if self.shard
                else self.recipe.calibrate(self.profile, self.out_dir, pool=pool, store=store, progress=self.progress)
            )
            progress.finished(*(f"calibrate_{r}" for r in calibrating))
            ing = self._ingest(res)
            problems = [x for x in ing.problems if self.shard is None or in_shard(x.id, *self.shard)]
            problems = self._verify_contamination(problems, ing, res, pool, store)
            self._run_stages(problems, res, pool, store)
        finally:
            store.close()
            pool.close()
            progress.stop()
        res.generated = sum(g.stats.generated for g in self._gens)
        res.cached = sum(g.stats.cached for g in self._gens)
        # the exit contract: work lost to a server that did not answer is no finished dataset
        if transient := incomplete_counts(res.dropped):
            if not self.allow_incomplete:
                raise IncompleteBuild(incomplete_message(transient, str(self.work_dir / rundir.STORE)))
            res.incomplete = transient
            log.warning("!!! writing an INCOMPLETE split as asked (--allow-incomplete): %s", transient)
        if self.shard:
            res.seconds = time.time() - t0
            rundir.write_json(self.work_dir / rundir.MANIFEST, _shard_manifest(self, res, len(problems)))
            return res
        inputs = finish(self.out_dir, self.profile, self.split, [self.work_dir], res)
        res.seconds = time.time() - t0
        rundir.write_json(
            self.out_dir / rundir.MANIFEST, manifest(self.profile, self.split, res, ing.decontam_report, inputs)
        )
        res.card = write_card(self.out_dir, self.profile, spec=self.recipe.card)
        return res

    def _ingest(self, res: BuildResult):
        from fineproofs.pipelines.ingest import run_ingest

        with _ingest_lock(self.out_dir):  # shards on one machine run ingest once
            ing = run_ingest(self.profile, self.out_dir)
        res.counts.update(ing.counts)
        if self.profile.limit and self.profile.limit < ing.counts.get("decontaminated", len(ing.problems)):
            res.counts["limit"] = len(ing.problems)
        res.dropped.update(ing.dropped)
        res.decontaminated = ing.decontaminated
        return ing

    def _verify_contamination(self, problems: list, ing, res: BuildResult, pool: EnginePool, store) -> list:
        """The LLM verifier of decontamination candidates, when the profile names one
        (:mod:`fineproofs.pipelines.decontam_verify`): problems it flags leave the build and
        join the decontamination report."""
        from fineproofs.pipelines.decontam_verify import verifier_role, verify_contamination

        role = verifier_role(self.profile)
        if role is None:
            return problems
        gen = CachedGenerator(pool.get(role.engine), store, progress=self.progress, role="decontam_verifier")
        self._gens.append(gen)
        kept, flagged = verify_contamination(self.profile, problems, gen, self.work_dir)
        report = ing.decontam_report
        report["flagged"] = sorted(
            [*report.get("flagged", []), *flagged], key=lambda r: (r["benchmark"], r["benchmark_id"], r["id"])
        )
        for f in flagged:
            b = report.get("benchmarks", {}).get(f["benchmark"])
            if b is not None:
                b["flagged"] = b.get("flagged", 0) + 1
        if flagged:
            # judged the same: contaminated; not judged: why (a server that did not answer is
            # transient, so the build ends incomplete and a re-run asks again)
            res.counts["decontaminated"] = res.counts.get("decontaminated", len(problems)) - len(flagged)
            drops = res.dropped.setdefault("decontaminate_verify", {})
            for f in flagged:
                kind = "contaminated" if f["method"] == "verifier" else reason_kind(f.get("reason", ""))
                drops[kind] = drops.get(kind, 0) + 1
        return kept

    def _run_stages(self, problems: list, res: BuildResult, pool: EnginePool, store: ResponseStore) -> None:
        """Every problem streams through the stages; results land in the stage files."""
        p = self.profile

        def gen(role: str) -> CachedGenerator:  # one per stage (stages may run in threads); engines shared
            engine = pool.get(getattr(p, role).engine)
            self._gens.append(CachedGenerator(engine, store, progress=self.progress, role=role))
            return self._gens[-1]

        depth = p.build.chunk_problems * p.build.prefetch_chunks
        stages = self.stages(gen)
        progress.add_steps(step_names(stages))  # the overall "step i/n" of the progress lines
        self._expect(stages, len(problems), store)
        for stage in stages:  # counts in the order of the stages (a chain starts from its last stage)
            res.counts.setdefault(stage.name, 0)
            res.dropped.setdefault(stage.name, {})
        with Recorder(self.work_dir, res.counts, res.dropped) as rec:
            items = iter([Work(x) for x in problems])
            for stage in stages:
                items = progress.tracked(step_of(stage), items, functools.partial(rec.through, stage))
                if self.overlap:
                    items = prefetch(items, depth)
            for _ in items:  # drain: nothing is kept in memory, the stage files hold it all
                pass


def step_of(stage) -> str | None:
    """The response-store stage name of ``stage`` if it asks a model (a grading stage's is
    its grader's), else None."""
    if grader := getattr(getattr(stage, "grader", None), "stage", None):
        return grader
    return stage.name if getattr(stage, "generator", None) is not None else None


def step_names(stages: list) -> list[str]:
    """The response-store stage names of the stages that ask a model, in order."""
    return [s for s in map(step_of, stages) if s]


@contextlib.contextmanager
def _ingest_lock(out_dir: Path):
    """One ingest at a time per run directory (shards started together on one machine;
    on a cluster, run `fineproofs ingest` once before the shards)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:  # never through a symlink planted there (opening it "w" would truncate its target)
        fd = os.open(out_dir / ".ingest.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{out_dir / '.ingest.lock'} is a symbolic link: remove it") from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _shard_manifest(build: Build, res: BuildResult, problems: int) -> dict:
    i, n = build.shard
    return {
        "split": build.split,
        "profile": build.profile.name,
        "shard": [i, n],
        "problems": problems,
        "counts": {k: v for k, v in res.counts.items() if k not in INGEST_COUNTS},
        "dropped": {k: v for k, v in res.dropped.items() if k not in INGEST_COUNTS},
        "generated": res.generated,
        "cached": res.cached,
        "seconds": round(res.seconds, 2),
        "incomplete": res.incomplete,  # written anyway on request (--allow-incomplete): merged only on request
        "done": True,
    }


def merge_shards(
    profile: Profile, out_dir: str | Path, split: str, count: int, allow_incomplete: bool = False
) -> BuildResult:
    """The split of a sharded build, from all ``count`` shards' stage files: the same rows
    as one process building every problem from the same stores. Refuses while a shard
    has not finished (its ``build.json`` is missing), and a shard written incomplete
    (``--allow-incomplete``) unless ``allow_incomplete``: the split is then marked
    incomplete as a single process's would be. Writes the card too."""
    out_dir = Path(out_dir)
    dirs = [shard_dir(out_dir, i, count) for i in range(count)]
    missing = [str(i) for i, d in enumerate(dirs) if not (d / rundir.MANIFEST).exists()]
    if missing:
        raise DataError(
            f"{len(missing)} of {count} shards of {out_dir} have not finished (shard "
            f"{', '.join(missing[:10])}{'...' if len(missing) > 10 else ''}): run them first"
        )
    partial = [str(i) for i, d in enumerate(dirs) if rundir.read_manifest(d / rundir.MANIFEST).get("incomplete")]
    if partial and not allow_incomplete:
        raise IncompleteBuild(
            f"{len(partial)} of {count} shards of {out_dir} ended incomplete (shard {', '.join(partial[:10])}"
            f"{'...' if len(partial) > 10 else ''}; a server did not answer): re-run the same command to finish "
            "them, or merge them as they are with --allow-incomplete"
        )
    rundir.check_split(out_dir, split)
    with rundir.locked(out_dir):
        res = _merge(profile, out_dir, split, dirs)
        res.card = write_card(out_dir, profile, spec=recipe(split).card)
        return res


def _merge(profile: Profile, out_dir: Path, split: str, dirs: list[Path]) -> BuildResult:
    t0 = time.time()
    res = BuildResult(out_dir, split)
    ingest = rundir.read_manifest(out_dir / rundir.INGEST_REPORT)
    with EnginePool() as pool, ResponseStore(out_dir / rundir.STORE) as store:  # the judges, once for all shards
        res.calibration = recipe(split).calibrate(profile, out_dir, pool=pool, store=store, progress=False)
    res.counts.update(ingest["counts"])
    res.dropped.update(ingest["dropped"])
    res.decontaminated = bool(ingest["decontaminated"])
    for d in dirs:
        m = rundir.read_manifest(d / rundir.MANIFEST)
        if m.get("split") != split:
            raise DataError(f"shard {d} was built for the {m.get('split')} split, not {split}")
        for k, v in m["counts"].items():
            res.counts[k] = res.counts.get(k, 0) + v
        for stage, reasons in m["dropped"].items():
            for k, v in reasons.items():
                res.dropped.setdefault(stage, {})[k] = res.dropped.get(stage, {}).get(k, 0) + v
        res.generated += m.get("generated", 0)
        res.cached += m.get("cached", 0)
        for stage, kinds in (m.get("incomplete") or {}).items():
            for k, v in kinds.items():
                res.incomplete.setdefault(stage, {})[k] = res.incomplete.get(stage, {}).get(k, 0) + v
    with rundir.atomic_write(out_dir / rundir.LLM_QUARANTINE) as q:
        for d in dirs:
            if (d / rundir.LLM_QUARANTINE).exists():
                q.write((d / rundir.LLM_QUARANTINE).read_text(encoding="utf-8"))
    inputs = finish(out_dir, profile, split, dirs, res)
    res.seconds = time.time() - t0
    rundir.write_json(out_dir / rundir.MANIFEST, manifest(profile, split, res, ingest["decontamination"], inputs))
    return res


def finish(out_dir: Path, profile: Profile, split: str, work_dirs: list[Path], res: BuildResult) -> SplitInputs:
    """Write the split from the stage files in ``work_dirs`` (the run, or its shards)."""
    r = recipe(split)
    inputs = read_inputs(out_dir / rundir.PROBLEMS, [d / rundir.STAGES for d in work_dirs], r.inputs)
    result = r.write(inputs, profile, out_dir)
    res.rows = result.rows
    res.counts["split"] = result.rows["default"]
    res.dropped["split"] = result.dropped
    if not result.rows.get("default"):
        log.warning(
            "!!! the %s split has NO rows: every problem was dropped (see the table below and %s); an "
            "empty split cannot be loaded with datasets or pushed",
            split,
            out_dir / rundir.QUARANTINE,
        )
    return inputs


def rename_of(profile: Profile, split: str) -> dict[str, str]:
    """The column names the rows of ``split`` carry (its recipe's rule)."""
    return recipe(split).rename(profile)


def manifest(profile: Profile, split: str, res: BuildResult, decontam_report: dict, inputs) -> dict:
    """``build.json``: the build's counts and everything the card is rendered from."""
    return {
        "split": split,
        "profile": profile.name,
        "counts": res.counts,
        "dropped": res.dropped,
        "rows": res.rows,
        "generated": res.generated,
        "cached": res.cached,
        "seconds": round(res.seconds, 2),
        "decontaminated": res.decontaminated,
        "decontamination": decontam_report,
        "source_licences": {x.source: x.licence or "unknown" for x in inputs.problems},
        "rename": rename_of(profile, split),
        "benchmarks": list(profile.decontamination.benchmarks),
        "limit": profile.limit,
        "rubric_hash": rubric_hash(inputs.rubrics.values()),
        "calibration": res.calibration,
        "incomplete": res.incomplete,
    }
