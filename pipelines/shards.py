"""One build across many machines: the LLM stages of a split in ``N`` shards.

Problems are assigned to shards by a hash of their id (:func:`~fineproofs.pipelines.build.in_shard`);
shard ``i`` keeps its own response store, stage files and quarantine under
``OUTPUT/shards/<i>-of-<N>/`` and resumes on its own. The shards are datatrove tasks
(:class:`ShardStep`), so the profile's executor runs them: local processes, a Slurm
array or Ray tasks. Ingest runs once before them (its dedup is global), and a merge
step writes the split from every shard's stage files
(:func:`~fineproofs.pipelines.build.merge_shards`): the same rows as one process
building every problem from the same stores.

With the local executor the shards are child processes this module starts and
watches itself (not a process pool, which waits forever for a task whose worker was
killed): a shard that dies (a signal, an out-of-memory kill) or fails is named, the
others finish, nothing is merged, and the command exits non-zero; every finished
shard and every stored completion stays, so the same command resumes. On a cluster the
merge is what notices: on Slurm it is submitted to start once the shards' array job has
ended, failed or not (``afterany``), and on Ray it runs in the driver after the shard
tasks; either way it checks every shard's ``build.json`` first and, where one is
missing, exits 3 naming the shards and their logs (:func:`check_finished`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from fineproofs import rundir
from fineproofs.config import Profile
from fineproofs.engines import EnginePool
from fineproofs.errors import DataError, FineproofsError, IncompleteBuild
from fineproofs.pipelines.build import Build, merge_shards
from fineproofs.pipelines.ingest import make_executor, run_ingest
from fineproofs.pipelines.recipes import recipe
from fineproofs.store import ResponseStore


class ShardStep(PipelineStep):
    """A datatrove step that runs the LLM stages of shard ``rank`` of ``world_size``."""

    name = "LLM stages of one shard"
    type = "fineproofs"

    def __init__(self, profile: Profile, out_dir: str | Path, split: str, allow_incomplete: bool = False):
        super().__init__()
        # in a task the ingest output is already there: read it back, never resubmit it
        self.profile = profile.with_overrides(executor="local")
        self.out_dir = str(out_dir)
        self.split = split
        self.allow_incomplete = allow_incomplete

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        res = Build(
            self.profile,
            self.out_dir,
            self.split,
            shard=(rank, world_size),
            progress=False,
            allow_incomplete=self.allow_incomplete,
        ).run()
        self.stat_update("generated", value=res.generated)
        self.stat_update("cached", value=res.cached)
        return iter(())


def run_shards(
    profile: Profile,
    out_dir: str | Path,
    split: str,
    count: int,
    merge: Callable[..., object] | None = None,
    allow_incomplete: bool = False,
) -> None:
    """Ingest once, then the ``count`` shards as tasks of the profile's executor, then
    ``merge`` (a pipeline callable, run as one more task after every shard finished).
    ``allow_incomplete``: a shard whose items failed for transient reasons still writes
    its stage files (marked incomplete) instead of failing."""
    out_dir = rundir.claim(out_dir)
    with EnginePool() as pool, ResponseStore(out_dir / rundir.STORE) as store:  # the judges before any shard
        recipe(split).calibrate(profile, out_dir, pool=pool, store=store)
    run_ingest(profile, out_dir)
    ex = profile.executor
    if ex.kind == "local":
        run_local(profile, out_dir, split, count, allow_incomplete)
        if merge is not None:
            merge()
        return
    logs = out_dir / rundir.LOGS
    name = f"llm_{split}_{count}"
    shards = make_executor(
        ex, [ShardStep(profile, out_dir, split, allow_incomplete)], count, logs, name, workers=ex.workers or count
    )
    if ex.kind == "ray":
        # datatrove's Ray executor, given a dependency, polls it until every task has
        # completed: a shard task that died would keep the merge waiting forever. The
        # shards run to their end here instead, then the dead ones are named.
        try:
            shards.run()
        except Exception as e:  # a failed task: named below from the completion markers
            log.error("shard tasks ended with an error: %s", e)
        check_finished(out_dir, count, logs / name)
        if merge is not None:
            merge()
        return
    if merge is None:
        shards.run()
        return
    # Slurm: the merge job starts once every shard job has ended, failed or not
    # (afterany, not afterok, which would leave it pending forever behind a dead shard),
    # and names the shards that did not finish
    make_executor(ex, [merge], 1, logs, f"merge_{split}_{count}", depends=shards, run_on_dependency_fail=True).run()


def check_finished(out_dir: str | Path, count: int, logs: Path | None = None) -> None:
    """Raise :class:`IncompleteBuild` naming every shard of ``count`` that has no
    ``build.json`` (it died, failed or never ran), with where its log is; the finished
    shards and every stored completion stay, so the same command resumes."""
    from fineproofs.pipelines.build import shard_dir

    out_dir = Path(out_dir)
    missing = [i for i in range(count) if not (shard_dir(out_dir, i, count) / rundir.MANIFEST).exists()]
    if not missing:
        return
    shown = ", ".join(map(str, missing[:10])) + ("..." if len(missing) > 10 else "")
    where = f" (their logs: {logs / 'logs'})" if logs is not None else ""
    raise IncompleteBuild(
        f"{len(missing)} of {count} shards did not finish: shard {shown}{where}. Nothing was merged; every "
        f"finished shard and every stored completion is kept under {out_dir / rundir.SHARDS}: re-run the same "
        "command to finish"
    )


def merge_task(
    profile: Profile,
    out_dir: str | Path,
    split: str,
    count: int,
    data=None,
    rank: int = 0,
    world_size: int = 1,
    allow_incomplete: bool = False,
):
    """:func:`~fineproofs.pipelines.build.merge_shards` (split, ``build.json`` and card) as a
    datatrove pipeline step: the task that runs after every shard finished (a pipeline
    step yields documents: this one yields none). ``functools.partial`` it with the first four."""
    check_finished(out_dir, count, Path(out_dir) / rundir.LOGS / f"llm_{split}_{count}")
    merge_shards(profile, out_dir, split, count, allow_incomplete)
    return iter(())


log = logging.getLogger(__name__)


def _shard_main(profile: Profile, out_dir: str, split: str, index: int, count: int, allow_incomplete: bool) -> None:
    """One shard in a child process: exit 0 when it finished, else the error's exit code
    (its one line on stderr)."""
    try:
        ShardStep(profile, out_dir, split, allow_incomplete).run(rank=index, world_size=count)
    except FineproofsError as e:
        print(f"fineproofs: shard {index} of {count}: {e}", file=sys.stderr, flush=True)
        os._exit(e.exit_code or 1)
    except BaseException as e:  # a bug: keep its traceback in the shard's stderr
        import traceback

        traceback.print_exc()
        print(f"fineproofs: shard {index} of {count}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


def _ended(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed ({name})"
    return "ended incomplete (exit 3)" if code == IncompleteBuild.exit_code else f"failed (exit {code})"


def _finished(shard: Path) -> bool:
    """A shard that wrote its ``build.json`` with nothing lost (one written incomplete on
    request runs again: its failed items may answer now, the rest comes from its store)."""
    m = shard / rundir.MANIFEST
    return m.exists() and not rundir.read_manifest(m).get("incomplete")


def run_local(profile: Profile, out_dir: str | Path, split: str, count: int, allow_incomplete: bool = False) -> None:
    """The ``count`` shards as child processes on this machine, at most ``workers`` at once
    (the profile's ``executor.workers``, else the cores available). Finished shards are
    skipped. Raises, naming every shard that died or failed, once the others are done."""
    from fineproofs.pipelines.build import shard_dir

    out_dir = Path(out_dir)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(count, profile.executor.workers or cpus))
    todo = [i for i in range(count) if not _finished(shard_dir(out_dir, i, count))]
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    ended: dict[int, int] = {}
    while todo or running:
        while todo and len(running) < workers:
            i = todo.pop(0)
            p = ctx.Process(
                target=_shard_main, args=(profile, str(out_dir), split, i, count, allow_incomplete), name=f"shard-{i}"
            )
            p.start()
            running[i] = p
        wait([p.sentinel for p in running.values()])  # returns when any shard process ends
        for i, p in list(running.items()):
            if not p.is_alive():
                p.join()
                del running[i]
                if p.exitcode:
                    ended[i] = p.exitcode
                    log.error("shard %d of %d %s", i, count, _ended(p.exitcode))
    if not ended:
        return
    what = "; ".join(f"shard {i} {_ended(c)}" for i, c in sorted(ended.items()))
    message = (
        f"{len(ended)} of {count} shards did not finish ({what}): nothing was merged. Every finished shard and "
        f"every stored completion is kept under {out_dir / rundir.SHARDS}: re-run the same command to finish"
    )
    if all(c == IncompleteBuild.exit_code for c in ended.values()):
        raise IncompleteBuild(message)
    raise DataError(message)
