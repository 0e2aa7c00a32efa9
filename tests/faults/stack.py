"""Real servers for the fault tests, started and stopped by the tests themselves.

- ``RedisServer``: a private ``redis-server`` on a spare port, no persistence (a restart
  comes back empty), and ``Blackhole``: a listener on that port that accepts connections
  and never answers (a Redis that hangs, a dropped route).
- ``PostgresCluster``: a private PostgreSQL (``initdb``/``pg_ctl`` from
  /usr/lib/postgresql/*/bin) on a spare port in a temporary folder, so it can be
  restarted without touching the machine's shared server.
- ``Process``: the product's processes as the Procfile runs them (gunicorn with
  config/gunicorn.py, a Celery worker, beat), with DJANGO_DEBUG off, in a session of
  their own so a whole worker (parent and children) can be SIGKILLed at once.
- ``Marketplace``: an HTTP endpoint on 127.0.0.1 that records the callbacks it gets.

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SECRET = "fault-tests-signature-secret-0123456789"
METRICS_TOKEN = "fault-tests-metrics-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# --- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` on ``port``, nothing saved: every start is empty."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(self.answers, timeout=10), "redis-server did not start"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class Blackhole:
    """Accepts TCP connections on ``port`` and never sends a byte."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.held: list[socket.socket] = []
        self._stop = threading.Event()

    def start(self) -> None:
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(512)
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            self.held.append(connection)

    def stop(self) -> None:
        self._stop.set()
        time.sleep(0.3)
        for connection in self.held:
            connection.close()
        self.listener.close()


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A private cluster: trust authentication on 127.0.0.1, user ``postgres``."""

    def __init__(self, port: int, workdir: Path) -> None:
        binaries = postgres_bin()
        assert binaries is not None, "PostgreSQL's server binaries are not installed"
        self.bin = binaries
        self.port = port
        self.data = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        self.socket_dir = workdir / "pgsocket"
        self.workdir = workdir

    def _run(self, *command: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *command], timeout=timeout, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to postgres
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def restart(self) -> None:
        # -l again: without it the new server writes to pg_ctl's output, which we hold open.
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)

    def sql(self, statement: str, database: str = "postgres") -> str:
        psql = self.bin / "psql"
        result = subprocess.run(
            [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-Atc", statement],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout.strip()


# --- The product's processes ---------------------------------------------------------------------


def app_environment(*, database_url: str, redis_url: str, port: int, queue: str, **extra: str) -> dict[str, str]:
    """Production settings (DJANGO_DEBUG off), explicit about what must not be guessed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "VONAGE_", "CELERY_", "PROXY_", "OUTBOX_", "PROMETHEUS_", "LOG_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY", "PYTEST_CURRENT_TEST")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "fault-tests-secret-key-not-for-production-0123456789",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_COOKIES": "false",
            "VONAGE_PROVIDER": "sandbox",
            "VONAGE_SIGNATURE_SECRET": SECRET,
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "CELERY_QUEUE": queue,
            "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
            "METRICS_TOKEN": METRICS_TOKEN,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@dataclass
class Process:
    """One of the product's processes, its output in ``log``."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL the process and everything it started (a worker's children): a lost host."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    lines.append(value)
        return lines


def web(env: dict[str, str], workdir: Path, *, workers: int = 2) -> Process:
    command = [str(VENV_BIN / "gunicorn"), "-c", "config/gunicorn.py", "config.wsgi"]
    # The metrics folder in the test's own: a SIGKILLed server leaves nothing behind.
    extra = {"WEB_CONCURRENCY": str(workers), "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics")}
    process = Process("web", command, {**env, **extra}, workdir / "web.log").start()
    base = f"http://127.0.0.1:{env['PORT']}"
    assert wait_for(lambda: http_status(f"{base}/health/live") == 200, timeout=60), process.output()
    return process


def worker(env: dict[str, str], workdir: Path, name: str, *, concurrency: int = 4, **extra: str) -> Process:
    pool = extra.get("WORKER_POOL", "prefork")
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "INFO", "-c", str(concurrency)]
    command += ["--pool", pool]
    command += ["-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    log = workdir / f"{name}.log"
    process = Process(name, command, {**env, **extra}, log).start()
    assert wait_for(lambda: " ready." in process.output(20000), timeout=60), process.output()
    return process


def beat(env: dict[str, str], workdir: Path) -> Process:
    command = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO"]
    command += ["--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
    return Process("beat", command, env, workdir / "beat.log").start()


def http_status(url: str, *, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


# --- The marketplace's endpoint ------------------------------------------------------------------


class Marketplace:
    """Records every callback: its event id (``X-Callback-Id``) and type; answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        marketplace = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                marketplace.received.append((self.headers.get("X-Callback-Id", ""), body.get("type", "")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
