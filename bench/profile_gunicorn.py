"""gunicorn configuration of ``bench/profile.py``: each worker profiles its own CPU time.

``gunicorn -c bench/profile_gunicorn.py ...`` with ``BENCH_PROFILE_DIR`` set: every worker
starts ``cProfile`` once Django is loaded (``post_worker_init``) and writes its statistics
to ``$BENCH_PROFILE_DIR/worker-<pid>.prof`` when it exits (``worker_exit``, which gunicorn
runs in the worker itself). The timer is ``time.process_time``: the worker's CPU, so a
request waiting on PostgreSQL or on the socket costs nothing while it waits.
"""

from __future__ import annotations

import cProfile
import os
import time
from pathlib import Path
from typing import Any

PROFILE_DIR_ENV = "BENCH_PROFILE_DIR"

# One profiler per worker process (the hooks run in the worker; this module is loaded in
# the master and inherited by the fork).
_profiler: cProfile.Profile | None = None


def post_worker_init(worker: Any) -> None:
    global _profiler
    _profiler = cProfile.Profile(time.process_time)
    _profiler.enable()


def worker_exit(server: Any, worker: Any) -> None:
    if _profiler is None:
        return
    _profiler.disable()
    directory = Path(os.environ[PROFILE_DIR_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    _profiler.dump_stats(directory / f"worker-{os.getpid()}.prof")
