"""gunicorn's configuration: ``gunicorn -c config/gunicorn.py config.wsgi`` (the Procfile's ``web``).

Everything comes from the environment, so one file serves a laptop, a VM and a container:

- ``PORT`` (8000): the port to listen on, on all interfaces. ``GUNICORN_BIND`` replaces the
  whole address (``unix:/run/app.sock``, ``127.0.0.1:8000``).
- ``WEB_CONCURRENCY``: worker processes. Default: the cores this process may use (CPU
  affinity and a cgroup v2 quota count) plus one; the benchmarks found no gain beyond.
- ``GUNICORN_TIMEOUT`` (30 s): a worker silent that long is killed and replaced.
  ``GUNICORN_GRACEFUL_TIMEOUT`` (30 s): how long a stopping worker may finish its request.
- ``GUNICORN_MAX_REQUESTS`` (0, off): recycle a worker after that many requests (+10 % jitter).
- ``FORWARDED_ALLOW_IPS`` (``127.0.0.1,::1``): the proxies whose ``X-Forwarded-*`` headers
  gunicorn believes. Set it to the reverse proxy's address, or ``*`` when only the proxy
  can reach this port (containers behind a load balancer).
- ``GUNICORN_ACCESS_LOG`` (``-``, stdout): one line per request; empty turns it off.
  ``GUNICORN_LOG_LEVEL`` (info) for the error log (stderr).
- ``GUNICORN_CONTROL_SOCKET``: a path turns on gunicorn's control socket (``gunicornc``);
  off by default, since its default path is per user, not per server.
- ``PROMETHEUS_MULTIPROC_DIR``: where the workers' metrics go so that ``/metrics`` adds
  them up (``config.metrics``). Default: a fresh directory of this server's own, under
  ``/dev/shm`` when it exists, emptied at start.

Any other setting: ``GUNICORN_CMD_ARGS="--name value"``; gunicorn reads it after this file,
so it wins. Sync workers are the production worker class: the benchmarks measure them,
and they need a buffering reverse proxy (nginx, a cloud load balancer) in front, which
absorbs slow clients (docs/operations.md).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """The integer in environment variable ``name``, or ``default`` when it is unset or empty.

    Raises ``ValueError`` naming the variable for anything else than a whole number >= minimum.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def cgroup_cpu_quota(path: Path = CGROUP_CPU_MAX) -> float | None:
    """CPUs allowed by a cgroup v2 quota (``docker run --cpus``, Kubernetes limits), or None."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: CPU affinity, capped by a cgroup quota when there is one.

    ``os.cpu_count()`` alone counts the host's cores, which in a container with a CPU
    limit would start far more workers (and database connections) than can run.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity call
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


_QUERY_STRING = re.compile(r"\?[^\s'\"]*")


class QueryStringRedactor(logging.Filter):
    """Cut query strings out of gunicorn's error log.

    Webhook GETs carry real phone numbers in their query (``/webhooks/answer?from=...``),
    and gunicorn writes the raw URI into "Error handling request" and "Invalid request"
    lines. The access log never sees them: its format has the path only (``%(U)s``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUERY_STRING.sub("?[query removed]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def metrics_directory() -> tuple[str, bool]:
    """PROMETHEUS_MULTIPROC_DIR for the app, and whether this server chose it (and removes
    it at exit). Only named here; ``on_starting`` makes it, before any worker writes there."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if configured:
        return configured, False
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()  # noqa: S108
    chosen = os.path.join(base, f"masked-calling-metrics-{os.getpid()}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = chosen
    return chosen, True


def _serving() -> bool:
    """True when gunicorn runs this file (not a test or tool reading its settings)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return program.name == "gunicorn" or program.parent.name == "gunicorn"


# --- Settings gunicorn reads (module-level names) -------------------------------

# Now, before the preloaded app imports prometheus_client, which picks its storage then.
_metrics_dir, _metrics_dir_made = metrics_directory() if _serving() else ("", False)

_port = env_int("PORT", 8000, minimum=1)
if _port > 65535:
    raise ValueError(f"PORT must be a TCP port (1 to 65535), not {_port}")
bind = [os.environ.get("GUNICORN_BIND", "").strip() or f"0.0.0.0:{_port}"]

workers = env_int("WEB_CONCURRENCY", available_cores() + 1, minimum=1)
worker_class = "sync"
# Import Django, every view and the SDK once in the master, freeze that heap there
# (config/wsgi.py calls gc.freeze()), then fork: workers share those pages and start at once.
preload_app = True

timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
max_requests = env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The worker heartbeat file: on a container's overlay filesystem a write can stall long
# enough for the master to kill a healthy worker; /dev/shm is memory.
# (gunicorn makes its own file there with mkstemp.)
_SHM = "/dev/shm"  # noqa: S108
if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK):
    worker_tmp_dir = _SHM

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
# Path without the query string (%(U)s, never %(r)s or %(q)s), and no referer: both can
# hold real numbers. The request id is the response's X-Request-ID header, "-" without one.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "masked-calling"

_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True


# --- Hooks ------------------------------------------------------------------------


def on_starting(server: Any) -> None:
    """In the master, before anything is logged about requests: redact query strings; make
    the metrics directory (the preloaded app has defined its metrics, not written them)."""
    logging.getLogger("gunicorn.error").addFilter(QueryStringRedactor())
    if _metrics_dir:
        # Emptied of a previous run's figures: counters restart with the server.
        directory = Path(_metrics_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)


def on_exit(server: Any) -> None:
    """The metrics directory this server made goes with it."""
    if _metrics_dir_made:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges stop counting (its counters keep adding up)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server: Any) -> None:
    """In the master, after the preloaded app and before the first fork.

    Drop any database connection the app opened while loading: a forked worker would
    inherit the socket, and two processes talking over one connection corrupt it.
    """
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()
