"""The server under test: gunicorn, the production server, on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    workers: int
    pid: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def default_workers() -> int:
    # Sync workers block on each database round trip, so one more than the cores
    # keeps both cores busy; more only adds context switches (see RESULTS.md).
    return (os.cpu_count() or 1) + 1


@contextmanager
def gunicorn(*, env: dict[str, str], workers: int, log_path: Path, extra_args: Sequence[str] = ()) -> Iterator[Server]:
    """Run gunicorn (sync workers) on a socket this process binds, so no port race.

    ``extra_args`` go on gunicorn's command line after the benchmark's own (bench/profile.py
    passes a configuration file whose hooks profile each worker).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"fd://{fd}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
        "--graceful-timeout",
        "5",
        *extra_args,
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=[fd], start_new_session=True
        )
    listener.close()
    server = Server(host="127.0.0.1", port=port, workers=workers, pid=process.pid)
    try:
        _wait_ready(server, process, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    # Every worker should have loaded Django before measuring: poll until several
    # consecutive requests succeed.
    successes = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/bench/bare", timeout=5) as response:  # noqa: S310
                successes = successes + 1 if response.status == 200 else 0
        except OSError:
            successes = 0
        if successes >= 4 * server.workers:
            return
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not answer within 60 s; see {log_path}")


# The benchmark's tasks: its servers run with CELERY_QUEUE=bench, which names the default
# queue and prefixes the others (config.celery.QUEUES).
BENCH_QUEUE = "bench"


def bench_queues() -> list[str]:
    from config.celery import QUEUES

    return [BENCH_QUEUE if short == "celery" else f"{BENCH_QUEUE}.{short}" for short in QUEUES]


@contextmanager
def celery_workers(
    *, env: dict[str, str], queue: str, concurrency: int, log_path: Path, pool: str = "prefork"
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Celery workers of the product on the benchmark's queues (``queue`` names them; the
    broker is the env's REDIS_URL): one
    worker with ``concurrency`` pool slots, or for the solo pool that many worker processes."""
    processes = []
    count, slots = (concurrency, 1) if pool == "solo" else (1, concurrency)
    with open(log_path, "ab") as log:
        for n in range(count):
            command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", pool, "-c", str(slots)]
            # No -Q: the worker takes every queue its CELERY_QUEUE names (bench_queues).
            command += ["-n", f"{queue}-{n}@%h", "--without-gossip", "--without-mingle"]
            command += ["--without-heartbeat", "-l", "warning"]
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (a worker and its pool processes), from /proc."""
    return sum(cpu_seconds(p) for p in [pid, *_children(pid)])


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, missing: float = 0.0) -> float:
    """User + system CPU of process ``pid`` from /proc; ``missing`` when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return missing
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return children


def _database_backends() -> list[int]:
    """PostgreSQL backends serving the benchmark database (not this process's own)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return [row[0] for row in cur.fetchall()]


class CpuMeter:
    """CPU time the server's workers and their database backends spend, between start() and stop().

    Unlike throughput, CPU per request does not change when other work shares the
    machine. Linux only, and only with PostgreSQL on this machine (else NaN).
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.workers = self.database = 0.0

    def _sample(self) -> tuple[float, float]:
        workers = sum(cpu_seconds(p) for p in [self.server.pid, *_children(self.server.pid)])
        database = sum(cpu_seconds(p) for p in _database_backends())
        return workers, database

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> None:
        end = self._sample()
        self.workers, self.database = end[0] - self._start[0], end[1] - self._start[1]

    def per_request_ms(self, requests: int) -> float:
        if not requests or not Path("/proc/self/stat").exists():
            return float("nan")
        return (self.workers + self.database) / requests * 1000
