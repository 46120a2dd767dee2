"""CPU threads for the in-process (transformers) engine.

torch uses every core by default, and its OpenMP threads spin while they wait for
work. On a machine where another process is busy (a shared 2-core runner, a second
build) spinning threads steal the cores the working threads need: 8 x 128 tokens of
SmolLM2 took 538 s with the default wait policy against 36 s with a passive one, on
the same 2 threads. So:

* the thread count is the number of cores this process may actually use: its CPU
  affinity (``os.sched_getaffinity``), capped by a cgroup CPU quota when one is
  readable (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``);
  ``EngineConfig.threads`` overrides it;
* OpenMP waits passively (``OMP_WAIT_POLICY=PASSIVE``); ``EngineConfig.omp_wait_policy:
  active`` restores spinning (marginally faster on an otherwise idle machine).

The wait policy is read once, when the OpenMP runtime is loaded, i.e. at the first
``import torch`` in the process. :func:`set_default_wait_policy` runs when
``fineproofs.engines`` is imported and sets ``OMP_WAIT_POLICY=PASSIVE`` unless the
variable is already set (a value the user exported always wins) or torch is already
loaded; programs that embed fineproofs and import torch first should export
``OMP_WAIT_POLICY=PASSIVE`` themselves.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "OMP_WAIT_POLICY"
#: the value the user exported before fineproofs touched the environment (None: unset)
USER_WAIT_POLICY: str | None = os.environ.get(ENV)
_warned: list[str] = []


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"max 100000"`` -> None,
    ``"150000 100000"`` -> 1.5)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = float(parts[0])
        period = float(parts[1]) if len(parts) > 1 else 100000.0
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _own_cgroup(proc_cgroup: str) -> str:
    """This process's cgroup v2 path from ``/proc/self/cgroup`` (the ``0::`` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip().lstrip("/")
    return ""


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | None = None) -> float | None:
    """The tightest readable cgroup CPU quota, in CPUs; None when there is none."""
    root = Path(root)
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    limits = []
    own = _own_cgroup(proc_cgroup)
    for d in {root, root / own} if own else {root}:
        text = _read(d / "cpu.max")
        if text is not None and (cpus := parse_cpu_max(text)) is not None:
            limits.append(cpus)
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        quota, period = _read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")
        if quota is not None and period is not None and (cpus := parse_cfs(quota, period)) is not None:
            limits.append(cpus)
    return min(limits) if limits else None


def available_cpus(affinity: set[int] | None = None, quota: float | None = None, *, read_quota: bool = True) -> int:
    """Cores this process may use: its affinity, capped by the cgroup quota (rounded up)."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not on Linux
            affinity = set(range(os.cpu_count() or 1))
    n = max(1, len(affinity))
    if quota is None and read_quota:
        quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return n


def choose_threads(threads: int | None = None, **kw) -> int:
    """The configured thread count, else :func:`available_cpus`."""
    return threads if threads else available_cpus(**kw)


def set_default_wait_policy(policy: str = "passive") -> bool:
    """Put ``OMP_WAIT_POLICY`` in the environment before the OpenMP runtime starts.
    Returns whether it was set (not when the user set it, nor once torch is loaded)."""
    if ENV in os.environ or "torch" in sys.modules:
        return False
    os.environ[ENV] = policy.upper()
    return True


def configure_torch(threads: int | None = None, wait_policy: str = "passive") -> int:
    """Apply the wait policy (if still possible) and the thread count; returns the count.

    Call before the first ``import torch`` for the wait policy to take effect; a policy
    the user exported is left alone, and a too-late change is reported, not hidden."""
    wanted = wait_policy.upper()
    if USER_WAIT_POLICY is not None:
        if USER_WAIT_POLICY.upper() != wanted:
            log.info("%s=%s from the environment wins over omp_wait_policy: %s", ENV, USER_WAIT_POLICY, wait_policy)
    elif "torch" not in sys.modules:
        os.environ[ENV] = wanted
    elif os.environ.get(ENV, "").upper() != wanted and not _warned:
        _warned.append(wanted)  # once per process
        log.warning(
            "omp_wait_policy: %s cannot take effect: torch was imported before fineproofs set %s; "
            "export %s=%s before starting the program",
            wait_policy,
            ENV,
            ENV,
            wanted,
        )
    import torch

    n = choose_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.debug("torch threads: %d, %s=%s", n, ENV, os.environ.get(ENV, "(unset)"))
    return n
