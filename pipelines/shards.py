"""One build across many machines: the LLM stages of a split in ``N`` shards.

Problems are assigned to shards by a hash of their id (:func:`~fineproofs.pipelines.build.in_shard`);
shard ``i`` keeps its own response store, stage files and quarantine under
``OUTPUT/shards/<i>-of-<N>/`` and resumes on its own. The shards are datatrove tasks
(:class:`ShardStep`), so the profile's executor runs them: local processes, a Slurm
array or Ray tasks. Ingest runs once before them (its dedup is global), and a merge
step writes the split from every shard's stage files
(:func:`~fineproofs.pipelines.build.merge_shards`): the same rows as one process
building every problem from the same stores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from fineproofs import rundir
from fineproofs.calibration import calibrate_roles
from fineproofs.config import Profile
from fineproofs.engines import EnginePool
from fineproofs.pipelines.build import Build
from fineproofs.pipelines.ingest import make_executor, run_ingest
from fineproofs.store import ResponseStore


class ShardStep(PipelineStep):
    """A datatrove step that runs the LLM stages of shard ``rank`` of ``world_size``."""

    name = "LLM stages of one shard"
    type = "fineproofs"

    def __init__(self, profile: Profile, out_dir: str | Path, split: str):
        super().__init__()
        # in a task the ingest output is already there: read it back, never resubmit it
        self.profile = profile.with_overrides(executor="local")
        self.out_dir = str(out_dir)
        self.split = split

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        res = Build(self.profile, self.out_dir, self.split, shard=(rank, world_size), progress=False).run()
        self.stat_update("generated", value=res.generated)
        self.stat_update("cached", value=res.cached)
        return iter(())


def run_shards(
    profile: Profile, out_dir: str | Path, split: str, count: int, merge: Callable[..., object] | None = None
) -> None:
    """Ingest once, then the ``count`` shards as tasks of the profile's executor, then
    ``merge`` (a pipeline callable, run as one more task after every shard finished)."""
    out_dir = rundir.claim(out_dir)
    with EnginePool() as pool, ResponseStore(out_dir / rundir.STORE) as store:  # the judges before any shard
        calibrate_roles(
            profile, out_dir, roles=("judge",) if split == "rl" else ("judge", "grader"), pool=pool, store=store
        )
    run_ingest(profile, out_dir)
    ex = profile.executor
    logs = out_dir / "logs"
    shards = make_executor(
        ex, [ShardStep(profile, out_dir, split)], count, logs, f"llm_{split}_{count}", workers=ex.workers or count
    )
    if merge is None:
        shards.run()
        return
    make_executor(ex, [merge], 1, logs, f"merge_{split}_{count}", depends=shards).run()
