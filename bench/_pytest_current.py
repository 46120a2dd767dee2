"""A pytest plugin for bench/bench_suite_memory.py: writes the node id of the test that is
running (``setup``, call and ``teardown`` included) to the file named by
``FINEPROOFS_BENCH_CURRENT_TEST``, so that the sampler can say which test ran at the peak.

Loaded through ``PYTEST_PLUGINS`` with bench/ on ``PYTHONPATH``; the variable is taken out
of ``os.environ`` at start-up, so pytest processes the tests start themselves (which
inherit the environment) load the plugin but write nothing.
"""

from __future__ import annotations

import os

_PATH = os.environ.pop("FINEPROOFS_BENCH_CURRENT_TEST", "")


def _write(text: str) -> None:
    if not _PATH:
        return
    tmp = f"{_PATH}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, _PATH)  # the sampler never reads half a name


def pytest_runtest_logstart(nodeid, location):
    _write(nodeid)


def pytest_sessionfinish(session, exitstatus):
    _write("<session finish>")
