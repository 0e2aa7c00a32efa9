"""/health/live, /health/ready and /health: what fails readiness, what only degrades, what anonymous callers see."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from config import health
from proxy.models import CallbackDelivery, Notification
from tests.console import staff_user
from tests.factories import ParticipantFactory, ServiceFactory

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _broken_database(monkeypatch) -> None:
    def broken() -> None:
        raise RuntimeError("could not connect to server at db.internal.example (10.0.0.5)")

    monkeypatch.setattr("config.health._database", broken)


@pytest.fixture(autouse=True)
def _fresh_ping_cache(monkeypatch):
    from django.core.cache import cache

    monkeypatch.setattr(health, "_last_ping", None)
    cache.delete(health.PING_CACHE_KEY)
    yield
    # A ping answered by a stand-in must not be what a later test's /health reads.
    cache.delete(health.PING_CACHE_KEY)


def _sms(participant, *, created_minutes_ago: float = 0) -> Notification:
    created = timezone.now() - timedelta(minutes=created_minutes_ago)
    return Notification.objects.create(
        participant=participant,
        service=participant.service,
        to_number=participant.real_number,
        from_number=participant.proxy_number_id,
        text="hi",
        created_at=created,
    )


# --- /health/live and /health/ready ------------------------------------------------------------


def test_live_answers_without_asking_anything(client: Client, django_assert_num_queries, monkeypatch):
    _broken_database(monkeypatch)
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_the_database_answers_whatever_redis_does(client: Client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_not_ready_without_the_database_and_no_detail_for_anonymous(client: Client, monkeypatch):
    _broken_database(monkeypatch)
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"]["error"] == "RuntimeError"
    assert "db.internal" not in response.content.decode()


# --- /health -----------------------------------------------------------------------------------


def test_healthy_without_redis(client: Client, settings):
    settings.REDIS_URL = ""
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    redis = body["checks"]["redis"]
    assert {k: v for k, v in redis.items() if k != "ms"} == {"ok": True, "configured": False}
    assert isinstance(redis["ms"], float)
    assert body["checks"]["workers"]["mode"] == "in-process"
    assert set(body["checks"]["outbox"]["kinds"]) == {
        "notifications",
        "callbacks",
        "recordings",
        "transcripts",
        "validations",
        "messages",
        "message-parts",
        "hangups",
    }
    assert response["Cache-Control"].startswith("max-age=0")


def test_redis_down_degrades_but_does_not_fail(client: Client, settings):
    port = _closed_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["ok"] is False
    # Anonymous callers learn the kind of failure, not the address.
    assert body["checks"]["redis"]["error"] == "ConnectionError"
    assert str(port) not in response.content.decode()


def test_staff_see_the_exception_text(client: Client, settings):
    port = _closed_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    client.force_login(staff_user("Operators"))  # those who watch the platform
    error = client.get("/health").json()["checks"]["redis"]["error"]
    assert error.startswith("ConnectionError") and str(port) in error


def test_database_down_is_503(client: Client, settings, monkeypatch):
    settings.REDIS_URL = ""
    _broken_database(monkeypatch)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"]["ok"] is False
    assert "10.0.0.5" not in response.content.decode()


def test_rows_past_due_are_counted_per_kind_and_a_pile_up_degrades(client: Client, settings):
    settings.REDIS_URL = ""
    participant = ParticipantFactory(validation="valid")
    _sms(participant)  # just queued: not past due
    _sms(participant, created_minutes_ago=2)  # past due, not yet a pile-up
    outbox = client.get("/health").json()["checks"]["outbox"]
    assert outbox["ok"] is True
    assert outbox["kinds"]["notifications"]["past_due"] == 1
    assert 100 <= outbox["kinds"]["notifications"]["oldest_past_due_seconds"] <= 130
    assert outbox["kinds"]["notifications"]["backlog"] is False

    _sms(participant, created_minutes_ago=20)
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    notifications = body["checks"]["outbox"]["kinds"]["notifications"]
    assert notifications["past_due"] == 2 and notifications["backlog"] is True
    assert notifications["oldest_past_due_seconds"] >= 20 * 60 - 30


def test_a_retry_scheduled_for_later_is_not_past_due(client: Client, settings):
    settings.REDIS_URL = ""
    service = ServiceFactory(callback_url="https://marketplace.example/hook")
    row = {"service": service, "event": "conversation.opened", "payload": {}, "url": service.callback_url}
    an_hour_ago = timezone.now() - timedelta(hours=1)
    CallbackDelivery.objects.create(**row, created_at=an_hour_ago, next_attempt_at=timezone.now() + timedelta(hours=1))
    CallbackDelivery.objects.create(**row, created_at=an_hour_ago)  # never tried for an hour
    callbacks = client.get("/health").json()["checks"]["outbox"]["kinds"]["callbacks"]
    assert callbacks["past_due"] == 1 and callbacks["backlog"] is True


def test_head_works_and_post_is_not_allowed(client: Client, settings):
    settings.REDIS_URL = ""
    for path in ("/health", "/health/live", "/health/ready"):
        assert client.head(path).status_code == 200
        assert client.post(path).status_code == 405


def _broker_mode(settings, monkeypatch, replies: list[dict]) -> list[int]:
    from config.celery import app

    settings.REDIS_URL = ""  # the Redis check is not what these tests look at
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    calls: list[int] = []

    def ping(**kwargs):
        calls.append(1)
        return replies

    monkeypatch.setattr(app.control, "ping", ping)
    return calls


def test_the_worker_ping_is_asked_once_then_kept(client: Client, settings, monkeypatch):
    calls = _broker_mode(settings, monkeypatch, [{"celery@worker-host-1": {"ok": "pong"}}])
    for _ in range(3):
        workers = client.get("/health").json()["checks"]["workers"]
        assert workers["ok"] is True and workers["responding_count"] == 1
    assert len(calls) == 1
    # Host names are for staff.
    assert "responding" not in workers
    client.force_login(staff_user("Operators"))  # those who watch the platform
    assert client.get("/health").json()["checks"]["workers"]["responding"] == ["celery@worker-host-1"]


def test_no_worker_answering_degrades(client: Client, settings, monkeypatch):
    _broker_mode(settings, monkeypatch, [])
    body = client.get("/health").json()
    workers = body["checks"]["workers"]
    assert (workers["mode"], workers["ok"], workers["responding_count"]) == ("broker", False, 0)
    assert body["status"] == "degraded"


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL")
def test_with_a_real_redis_it_is_ok(client: Client, settings):
    settings.REDIS_URL = os.environ["REDIS_URL"]
    redis = client.get("/health").json()["checks"]["redis"]
    assert redis["ok"] is True and redis["configured"] is True
