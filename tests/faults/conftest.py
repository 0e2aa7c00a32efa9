"""Fixtures for the fault tests: real Redis, PostgreSQL, gunicorn, workers and beat in subprocesses.

They share the test database with the processes they start, so they need PostgreSQL
(``DATABASE_URL=postgres://...``; skipped on SQLite, and CI runs them there with skips
forbidden) and the ``redis-server`` binary. Each test's data is committed
(``transaction=True``) so the other processes see it.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from proxy.api_keys import api_key_create
from proxy.models import Service
from tests.factories import ServiceFactory, VirtualNumberFactory
from tests.faults.stack import SECRET, Marketplace, RedisServer, app_environment, free_port
from webhooks.signatures import sign_voice_webhook


def database_url() -> str:
    db = connection.settings_dict
    auth = db.get("USER") or "postgres"
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or '5432'}/{db['NAME']}"


@pytest.fixture
def needs_real_servers(db) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): the processes started share the test database")
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary (Debian's redis-server)")


@pytest.fixture
def redis_server(tmp_path, needs_real_servers) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def marketplace() -> Iterator[Marketplace]:
    endpoint = Marketplace()
    yield endpoint
    endpoint.stop()


@dataclass
class Tenant:
    """A service with a key, a pool, and a callback URL, committed for the other processes."""

    service: Service
    key: str
    numbers: list[str]
    base: str
    session: requests.Session = field(default_factory=requests.Session)

    def api(self, method: str, path: str, *, timeout: float = 5.0, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return self.session.request(method, f"{self.base}{path}", headers=headers, timeout=timeout, **kwargs)

    def open(self, a: str, b: str, **extra: Any) -> dict[str, Any]:
        body = {"participants": [{"number": a}, {"number": b}], **extra}
        response = self.api("POST", "/api/v1/conversations", json=body)
        assert response.status_code == 201, response.text
        return response.json()


def make_tenant(base: str, *, callback_url: str = "", numbers: int = 12) -> Tenant:
    service = ServiceFactory(
        slug=f"svc-{uuid.uuid4().hex[:6]}",
        callback_url=callback_url,
        callback_secret="s3cret",
        cooldown=0,
        rate_limit=0,
    )
    pool = [VirtualNumberFactory(service=service, number=f"1201555{300 + n:04d}").number for n in range(numbers)]
    return Tenant(service=service, key=api_key_create(service=service)[1], numbers=pool, base=base)


def voice_webhook(
    session: requests.Session,
    base: str,
    path: str,
    payload: dict[str, Any],
    *,
    method: str = "POST",
    timeout: float = 5,
) -> requests.Response:
    """Sign and send a voice webhook the way Vonage does (a JWT; with a body, its hash)."""
    if method == "GET":
        token = sign_voice_webhook(body=b"", secret=SECRET)
        return session.get(
            f"{base}{path}", params=payload, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
    body = json.dumps(payload).encode()
    token = sign_voice_webhook(body=body, secret=SECRET)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return session.post(f"{base}{path}", data=body, headers=headers, timeout=timeout)


@dataclass
class Tally:
    """Requests tried, failed (wrong answer or error) and slow (over the limit), per kind."""

    limit: float
    tried: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    slow: dict[str, int] = field(default_factory=dict)
    worst: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, kind: str, ok: bool, seconds: float, note: str = "") -> None:
        self.tried[kind] = self.tried.get(kind, 0) + 1
        self.worst[kind] = max(self.worst.get(kind, 0.0), seconds)
        if not ok:
            self.failed[kind] = self.failed.get(kind, 0) + 1
            if note and len(self.notes) < 10:
                self.notes.append(f"{kind}: {note}")
        if seconds > self.limit:
            self.slow[kind] = self.slow.get(kind, 0) + 1

    def timed(self, kind: str, call: Any, check: Any) -> Any:
        started = time.monotonic()
        try:
            response = call()
        except Exception as exc:
            self.record(kind, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"[:200])
            return None
        seconds = time.monotonic() - started
        ok = bool(check(response))
        self.record(kind, ok, seconds, "" if ok else f"{response.status_code} {response.text[:150]}")
        return response

    def report(self, title: str) -> str:
        lines = [f"{title}: limit {self.limit:.1f} s"]
        for kind in sorted(self.tried):
            lines.append(
                f"  {kind:<22} tried {self.tried[kind]:>4}  failed {self.failed.get(kind, 0):>3}  "
                f"over limit {self.slow.get(kind, 0):>3}  slowest {self.worst[kind]:.2f} s"
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())

    @property
    def total_slow(self) -> int:
        return sum(self.slow.values())


def environment(*, redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """The processes' environment against the test database, with short outbox timings:
    the same mechanism as production's 45 s lease, 30 s grace and 30 s redrive, in seconds."""
    timings = {"OUTBOX_LEASE_SECONDS": "6", "OUTBOX_REDRIVE_GRACE_SECONDS": "2", "OUTBOX_REDRIVE_EVERY_SECONDS": "2"}
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    return app_environment(
        database_url=database_url(), redis_url=redis_url, port=port, queue=queue, **{**timings, **extra}
    )


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path
