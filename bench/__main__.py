"""``python -m bench [--smoke] [--only N ...]``: every figure beside its baseline.

Creates its PostgreSQL database when missing (default ``bench``), migrates it, and
runs the benchmarks (issue 6; the retention job of issue 16; masked messages of issue 15)
on this machine, printing each figure as it is measured and a Markdown table at the end
(``--markdown FILE`` also writes it). ``--profile`` runs the CPU profile of the answer
path instead (``bench/profile.py``, issue 17).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BENCHMARKS = {
    "1": "bench.answer",
    "2": "bench.scale",
    "3": "bench.pool",
    "4": "bench.create",
    "5": "bench.expiry",
    "6": "bench.retention",
    "7": "bench.messages",
}
# Left out of --smoke unless asked for with --only: it starts a Celery worker beside the
# server and takes 15 to 25 s even at smoke sizes.
NOT_IN_SMOKE = {"7"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness in well under a minute")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to create and use (env BENCH_DATABASE_URL; default %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis for the broker and cache (env BENCH_REDIS_URL; empty: tasks wait in memory)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="instead of the benchmarks: where the answer path's CPU goes"
    )
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers (default: cores + 1)")
    parser.add_argument("--markdown", type=Path, help="also write the results table to this file")
    args = parser.parse_args(argv)

    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("the benchmarks run on PostgreSQL: give a postgres:// URL")

    from bench import server
    from bench.context import FULL, SMOKE, Context, server_environment
    from bench.report import Report

    server_env = server_environment(database_url=args.database_url, redis_url=_redis_or_empty(args.redis_url))
    # This process runs the in-process benchmarks with the same settings as the server.
    os.environ.update({k: v for k, v in server_env.items() if k != "PYTHONDONTWRITEBYTECODE"})

    from bench import db

    db.database_ensure(args.database_url)
    import django

    django.setup()
    db.migrate()

    report = Report()
    context = Context(
        sizes=SMOKE if args.smoke else FULL,
        report=report,
        database_url=args.database_url,
        redis_url=server_env["REDIS_URL"],
        workers=args.workers or server.default_workers(),
        scratch=Path(tempfile.mkdtemp(prefix="bench-")),
        smoke=args.smoke,
        server_env=server_env,
    )
    summary = machine_summary(context)
    print(summary, flush=True)
    if not server_env["REDIS_URL"]:
        report.note("*", "Redis not reachable: enqueued tasks wait in the server's memory instead of a broker")

    if args.profile:
        from bench import profile

        print(f"\n== {profile.TITLE} ==", flush=True)
        text = profile.run(context)
        if args.markdown:
            args.markdown.write_text(summary + "\n\n" + text)
        return 0

    import importlib

    failed: list[str] = []
    began = time.monotonic()
    chosen = args.only or sorted(n for n in BENCHMARKS if not (args.smoke and n in NOT_IN_SMOKE))
    for number in chosen:
        module = importlib.import_module(BENCHMARKS[number])
        print(f"\n== {number}. {module.TITLE} ==", flush=True)
        # Other work on the machine skews every figure: say how busy it was.
        report.note(number, "load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        started = time.monotonic()
        try:
            module.run(context)
        except Exception:
            traceback.print_exc()
            report.note(number, f"FAILED: {traceback.format_exc().strip().splitlines()[-1]}")
            failed.append(number)
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
    print(f"\nTotal {time.monotonic() - began:.0f} s", flush=True)
    report.summary()
    if args.markdown:
        args.markdown.write_text(summary + "\n\n" + report.markdown())
    return 1 if failed else 0


def _redis_or_empty(url: str) -> str:
    if not url:
        return ""
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception:
        return ""
    return url


def machine_summary(context: object) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        postgres = cur.fetchone()[0]
    memory = ""
    with contextlib.suppress(OSError, IndexError):
        memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()[1]
    workers = getattr(context, "workers", "?")
    commit = ""
    with contextlib.suppress(OSError):
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False, cwd=ROOT
        ).stdout.strip()
    return (
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), memory: {' '.join(memory.split()[:2])}; "
        f"Python {platform.python_version()}, PostgreSQL {postgres}, gunicorn {_version('gunicorn')} "
        f"({workers} sync workers), Django {_version('django')}; code {commit or 'unknown'}"
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
