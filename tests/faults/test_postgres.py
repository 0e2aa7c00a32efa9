"""PostgreSQL restarted under load, and backends terminated: requests during the restart fail
cleanly (the answer webhook still speaks a "try again" message; the API answers 503), and the
first requests after it succeed (stale persistent connections are checked and replaced).

The cluster is a private one (initdb/pg_ctl in a temporary folder, on a spare port): the
machine's shared PostgreSQL is never restarted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from proxy.ncco import GENERIC_UNAVAILABLE_TEXT
from tests.conftest import ALICE, BOB
from tests.faults.conftest import Tally, voice_webhook
from tests.faults.stack import ROOT, PostgresCluster, app_environment, free_port, postgres_bin, web

pytestmark = [pytest.mark.faults]

# A hung request is one the caller gives up on: Vonage waits 1 s to connect, 5 s to read.
LIMIT = 5.0


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def cluster(db) -> Iterator[PostgresCluster]:
    from django.db import connection

    if connection.vendor != "postgresql":
        # Its cluster is its own, but the suite's PostgreSQL pass is where the servers are.
        pytest.skip("runs in the PostgreSQL pass (DATABASE_URL=postgres://...), with the other fault tests")
    if postgres_bin() is None:
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin), as Debian's postgresql installs")
    # Not under pytest's tmp_path: as root, the cluster belongs to the postgres user, who
    # must be able to reach its folder.
    workdir = Path(tempfile.mkdtemp(prefix="masked-faults-pg-"))
    server = PostgresCluster(free_port(), workdir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _answer_ok(proxy_number: str) -> tuple[Any, Any]:
    """(connected, try-again): what the answer webhook may say."""

    def connected(response: requests.Response) -> bool:
        return response.status_code == 200 and any(a.get("action") == "connect" for a in response.json())

    def try_again(response: requests.Response) -> bool:
        return response.status_code == 200 and [a.get("text") for a in response.json()] == [GENERIC_UNAVAILABLE_TEXT]

    return connected, try_again


def test_postgres_restart_and_terminated_backends(cluster, tmp_path, capsys):
    cluster.sql("CREATE DATABASE masked")
    port = free_port()
    # No Redis: tasks run in-process, so PostgreSQL is the only server in play.
    # No rate limit: three clients on a fast machine would pass the default 50 a second.
    env = app_environment(
        database_url=cluster.url("masked"), redis_url="", port=port, queue="unused", PROXY_DEFAULT_RATE_LIMIT="0"
    )
    _manage(env, "migrate", "--verbosity", "0")
    key = _manage(env, "create_api_key", "faults").strip().splitlines()[-1]
    _manage(env, "add_numbers", "--service", "faults", "12015550300", "12015550301", "12015550302")
    base = f"http://127.0.0.1:{port}"
    server = web(env, tmp_path, workers=2)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        created = session.post(
            f"{base}/api/v1/conversations",
            json={"participants": [{"number": ALICE}, {"number": BOB}], "notify": False},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        proxy_number = created.json()["participants"][0]["proxy_number"]
        connected, try_again = _answer_ok(proxy_number)

        def answer() -> requests.Response:
            payload = {"from": ALICE, "to": proxy_number, "uuid": uuid.uuid4().hex}
            return voice_webhook(requests.Session(), base, "/webhooks/answer", payload, method="GET", timeout=10)

        def listing() -> requests.Response:
            return requests.get(f"{base}/api/v1/conversations", headers=headers, timeout=10)

        # Every web worker holds a persistent connection before anything happens to it.
        for _ in range(20):
            assert connected(answer())
            assert listing().status_code == 200

        during = Tally(limit=LIMIT)
        stop = threading.Event()
        said: dict[str, int] = {"connected": 0, "try again": 0, "api 200": 0, "api 503": 0}

        def load() -> None:
            for _ in range(2000):  # bounded in count as well as in time
                if stop.is_set():
                    return
                response = during.timed("answer webhook", answer, lambda r: connected(r) or try_again(r))
                if response is not None and response.status_code == 200:
                    said["connected" if connected(response) else "try again"] += 1
                listed = during.timed("api list", listing, lambda r: r.status_code in (200, 503))
                if listed is not None and listed.status_code in (200, 503):
                    said[f"api {listed.status_code}"] += 1

        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        started = time.monotonic()
        cluster.restart()
        restart_seconds = time.monotonic() - started
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

        # The first requests after the restart succeed: no stale connection is served as an error.
        after = Tally(limit=LIMIT)
        for _ in range(10):
            after.timed("answer webhook", answer, connected)
            after.timed("api list", listing, lambda r: r.status_code == 200)

        # A terminated backend (a failover, an administrator): invisible to callers.
        terminated = cluster.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = 'masked' AND pid <> pg_backend_pid()"
        )
        killed = Tally(limit=LIMIT)
        for _ in range(10):
            killed.timed("answer webhook", answer, connected)
            killed.timed("api list", listing, lambda r: r.status_code == 200)

        with capsys.disabled():
            print()
            print(during.report(f"PostgreSQL restarted under load (pg_ctl restart took {restart_seconds:.1f} s)"))
            print(
                f"  the answer webhook said: connected {said['connected']}, try again {said['try again']}; "
                f"the API answered 200 {said['api 200']}, 503 {said['api 503']} times"
            )
            print(after.report("First requests after the restart"))
            print(killed.report(f"After pg_terminate_backend of {terminated} connections"))
        assert during.total_failed == 0, during.report("failures")
        assert during.total_slow == 0, during.report("hung")
        assert after.total_failed == 0 and killed.total_failed == 0, after.report("after") + killed.report("killed")
        assert int(terminated) >= 1
    finally:
        server.stop()
