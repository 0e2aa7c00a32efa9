"""/health: database, Redis, workers, outbox backlog."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from proxy.models import Notification
from tests.console import staff_user
from tests.factories import ParticipantFactory

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    assert response["Cache-Control"].startswith("max-age=0")


def test_redis_down_is_503(client: Client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    client.force_login(staff_user("Operators"))  # exception text is for those who watch the platform
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["redis"]["ok"] is False
    assert "ConnectionError" in body["checks"]["redis"]["error"]


def test_database_down_is_503(client: Client, settings, monkeypatch):
    settings.REDIS_URL = ""

    def broken() -> None:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr("config.health._database", broken)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["ok"] is False


def test_a_stuck_outbox_is_reported_as_degraded(client: Client, settings):
    settings.REDIS_URL = ""
    participant = ParticipantFactory()
    notification = Notification.objects.create(
        participant=participant,
        service=participant.service,
        to_number=participant.real_number,
        from_number=participant.proxy_number_id,
        text="hi",
    )
    Notification.objects.filter(pk=notification.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["outbox"]["stuck_sms"] == 1


def test_a_callback_never_tried_for_long_is_reported_as_overdue(client: Client, settings):
    from proxy.models import CallbackDelivery
    from tests.factories import ServiceFactory

    settings.REDIS_URL = ""
    service = ServiceFactory(callback_url="https://marketplace.example/hook")
    fresh = {"service": service, "event": "conversation.opened", "payload": {}, "url": service.callback_url}
    CallbackDelivery.objects.create(**fresh)  # just queued: not overdue
    CallbackDelivery.objects.create(**fresh, created_at=timezone.now() - timedelta(hours=1))

    outbox = client.get("/health").json()["checks"]["outbox"]

    assert outbox["overdue_callbacks"] == 1
    assert outbox["ok"] is False


def test_head_works_and_post_is_not_allowed(client: Client, settings):
    settings.REDIS_URL = ""
    assert client.head("/health").status_code == 200
    assert client.post("/health").status_code == 405


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL")
def test_with_redis_and_no_worker_reports_workers_missing(client: Client, settings, monkeypatch):
    from config.celery import app

    settings.REDIS_URL = os.environ["REDIS_URL"]
    # Another test's worker may share this Redis: here none answers the ping.
    # (tests/test_worker_redis.py checks a real worker's answer.)
    monkeypatch.setattr(app.control, "ping", lambda **kwargs: [])
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    client.force_login(staff_user("Operators"))  # worker names are host names: staff only
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["redis"]["ok"] is True
    workers = body["checks"]["workers"]
    assert (workers["mode"], workers["ok"], workers["responding"]) == ("broker", False, [])
    assert body["status"] == "degraded"
