"""The benchmark harness's smoke mode runs end to end on PostgreSQL and prints every figure.

Benchmarks are not tests: nothing here asserts a timing, only that each figure is measured.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.postgres

# One line per figure the full run prints, by benchmark.
EXPECTED = [
    r"\[1\] answer webhook peak throughput .*\| bare view: [\d,]+ req/s \| ratio [\d.]+",
    r"\[1\] answer webhook throughput / bare view, median of the \d+ rounds' ratios: [\d.]+ \| per round: [\d.]+",
    r"\[1\] answer webhook p99 at half its peak .*\| bare view, same rate: ",
    r"\[1\] answer webhook / the webhook minimum .*median of the \d+ rounds' ratios .*: [\d.]+ \| per round: ",
    r"\[1\] floor: the webhook minimum, .*\| bare view: [\d,]+ req/s \| ratio [\d.]+",
    r"\[1\] floor with a route table \(prototype\) / floor with the route read, median .*: [\d.]+ \| per round: ",
    r"\[1\] floor: bare view \+ the answer's own route read .*\| bare view: [\d,]+ req/s \| ratio [\d.]+",
    r"\[1\] answer webhook with an intercept hook on loopback answering at once, p99 .*\| plain answer, same loop: ",
    r"\[1\] PostgreSQL CPU per read: a route table, one probe, plus .*\| the answer's route read .*: [\d,.]+ us",
    r"\[1\] saved per answer by a route table, the reads alone .*\| answer webhook CPU per request, server \+ ",
    r"\[2\] route_for_call p50 at [\d,]+ open conversations .*\| at [\d,]+: ",
    r"\[2\] answer webhook p50 over HTTP at [\d,]+ .*\| at [\d,]+: ",
    r"\[3\] numbers needed: two numbers per conversation \(Vonage sample\): [\d,]+ numbers \| lower bound",
    r"\[3\] numbers needed: one shared number per conversation, reused greedily: ",
    r"\[3\] numbers used: proxy.allocation chooser, pool = lower bound .*: MET",
    r"\[3\] numbers used: conversation_create on PostgreSQL, pool = lower bound .*: MET",
    r"\[3\] numbers used: conversation_create in PIN mode always, pool = one number per country .*: MET",
    r"\[3\] PINs held twice by open participants of one number .*: 0 .*MET",
    r"\[3\] PIN call p99: answer \+ input round trip over HTTP.*\| a pair caller's answer, same loop: ",
    r"\[4\] conversations created per second .*\| bare authenticated API view: ",
    r"\[4\] creation latency p99 under \d+ clients: ",
    r"\[4\] invariant violations .*: 0 \| target 0: MET",
    r"\[5\] expiry sweep of [\d,]+ due conversations .*\| naive per-conversation close ",
    r"\[6\] retention job rate over [\d,]+ ended conversations .*\| naive per-conversation redaction ",
]


def _bench_database_url() -> str:
    """A database of its own beside the one the test settings name (never the test database)."""
    db = settings.DATABASES["default"]
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    name = (parts.path.lstrip("/") or db.get("NAME") or "postgres") + "_bench"
    return urlunsplit(parts._replace(path=f"/{name}"))


def run_bench(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """``python -m bench ARGS`` on a database of its own, with this run's Redis (if any)."""
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": _bench_database_url(),
        # Without a REDIS_URL the server's tasks wait in memory instead of on a broker.
        "BENCH_REDIS_URL": os.environ.get("REDIS_URL", ""),
    }
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the benchmarks run on PostgreSQL only (set DATABASE_URL=postgres://...)",
)
def test_smoke_run_prints_every_figure(tmp_path: Path) -> None:
    markdown = tmp_path / "results.md"
    completed = run_bench("--smoke", "--markdown", str(markdown), timeout=300)
    output = completed.stdout
    assert completed.returncode == 0, output[-3000:] + completed.stderr[-3000:]
    for pattern in EXPECTED:
        assert re.search(pattern, output), f"missing figure {pattern!r} in:\n{output[-3000:]}"
    assert "FAILED" not in output
    assert "| 5 | expiry sweep" in markdown.read_text()
    assert "| 6 | retention job rate" in markdown.read_text()
    assert "WRONG RESULT" not in output
    if shutil.which("wrk") is None:
        assert "wrk is not installed" in output


MESSAGES_EXPECTED = [
    r"\[7\] texts relayed per second .*\| worker's empty tasks .*\| ratio [\d.]+",
    r"\[7\] inbound SMS webhooks answered per second.*\| signature check alone: ",
    r"\[7\] delay webhook -> provider send p99, under that load: .*\| at half the relay rate ",
    r"\[7\] duplicates .* \+ lost texts \(0\), of [\d,]+: 0 \| target 0: MET",
    r"\[7\] CPU per relay: ",
]


@pytest.mark.redis
@pytest.mark.skipif(
    connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"),
    reason="the messages benchmark needs PostgreSQL and Redis (set DATABASE_URL=postgres://... and REDIS_URL)",
)
def test_smoke_run_of_the_messages_benchmark_prints_every_figure() -> None:
    """Benchmark 7 is left out of --smoke (its worker makes it slow); asked for, it runs."""
    completed = run_bench("--smoke", "--only", "7", timeout=300)
    output = completed.stdout
    assert completed.returncode == 0, output[-3000:] + completed.stderr[-3000:]
    for pattern in MESSAGES_EXPECTED:
        assert re.search(pattern, output), f"missing figure {pattern!r} in:\n{output[-3000:]}"
    assert "FAILED" not in output
