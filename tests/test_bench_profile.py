"""``scripts/bench --profile --smoke`` runs end to end on PostgreSQL and prints its table.

Like the benchmarks' smoke test, nothing here asserts a timing: only that the profile of
the answer path comes out, that its route read was seen, and that every function the
table names (bench/profile.py BUCKETS) still exists and ran, so a rename fails here
instead of reading as zero.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection

from tests.test_bench_smoke import run_bench

pytestmark = pytest.mark.postgres


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the profile runs on PostgreSQL only (set DATABASE_URL=postgres://...)",
)
def test_profile_smoke_run_prints_the_breakdown(tmp_path: Path) -> None:
    markdown = tmp_path / "profile.md"
    # One worker: each gunicorn start (three of them) then loads Django once, not three times.
    completed = run_bench("--profile", "--smoke", "--workers", "1", "--markdown", str(markdown), timeout=120)
    output = completed.stdout
    assert completed.returncode == 0, output[-3000:] + completed.stderr[-3000:]
    route = re.search(
        r"^\|[· ]*route read \(proxy\.selectors\.route_for_call\).*?\| ([\d.]+)% \| ([\d,.]+) \|", output, re.M
    )
    assert route, f"no route read row in:\n{output[-3000:]}"
    assert float(route.group(1)) > 0 and float(route.group(2).replace(",", "")) > 0
    assert re.search(r"\*\*gunicorn workers, CPU per request \(unprofiled\)\*\* \| 100% \| \*\*[\d,]+\*\*", output)
    assert "PostgreSQL backends, CPU per request" in output
    assert "top 25 functions by own time" in output
    assert "never seen" not in output, output[-2000:]
    assert "do not add up" not in output and "Negative rows" not in output, output[-3000:]
    assert "route read (proxy.selectors.route_for_call)" in markdown.read_text()
