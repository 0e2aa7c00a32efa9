"""Redis off the call path, in process: the rate limit fails open, publishing is skipped while Redis is away."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from config.celery import app
from config.redis_guard import REDIS, Breaker
from proxy.models import CallbackDelivery, Notification
from proxy.outbox import queue_on_commit
from proxy.throttling import ServiceRateThrottle
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db


def test_a_breaker_opens_on_failure_and_closes_after_its_cooldown():
    clock = [100.0]
    breaker = Breaker("test", cooldown=5)
    with mock.patch("config.redis_guard.time.monotonic", side_effect=lambda: clock[0]):
        assert breaker.allows()
        breaker.failed(RedisConnectionError("down"))
        assert not breaker.allows()
        clock[0] += 5
        assert breaker.allows()
        breaker.succeeded()
        assert breaker.allows()


def test_the_rate_limit_lets_requests_through_when_redis_fails(api, pool, caplog):
    body = {"participants": [{"number": ALICE}, {"number": BOB}]}
    down = RedisConnectionError("down")
    with (
        mock.patch.object(ServiceRateThrottle, "_count", side_effect=down) as count,
        caplog.at_level(logging.WARNING, logger="config.redis_guard"),
    ):
        assert api.post("/api/v1/conversations", body, format="json").status_code == 201
        assert api.get("/api/v1/conversations").status_code == 200
    # Tried once; the second request did not wait on Redis again.
    assert count.call_count == 1
    assert not REDIS.allows()
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


def test_publishing_is_skipped_while_redis_is_away(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    published = []

    def publish(name, *args, **options):
        published.append(name)
        raise RedisConnectionError("Timeout reading from socket")

    monkeypatch.setattr("proxy.outbox.queue_now", publish)
    with django_capture_on_commit_callbacks(execute=True):
        queue_on_commit("proxy.tasks.deliver_callback", 1)
        queue_on_commit("proxy.tasks.deliver_callback", 2)
    # The first publish failed and opened the breaker; the second was not tried.
    assert published == ["proxy.tasks.deliver_callback"]
    assert not REDIS.allows()


def test_a_successful_publish_keeps_the_breaker_closed(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    published = []
    monkeypatch.setattr("proxy.outbox.queue_now", lambda name, *args, **options: published.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        queue_on_commit("proxy.tasks.deliver_callback", 1)
    assert published == ["proxy.tasks.deliver_callback"] and REDIS.allows()


def test_rows_written_while_redis_is_away_are_kept(api, pool, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    REDIS.failed(RedisConnectionError("down"))
    with mock.patch("proxy.outbox.queue_now") as publish, django_capture_on_commit_callbacks(execute=True):
        body = {"participants": [{"number": ALICE}, {"number": BOB}]}
        assert api.post("/api/v1/conversations", body, format="json").status_code == 201
    publish.assert_not_called()
    assert Notification.objects.filter(status="queued").count() == 2
    assert not CallbackDelivery.objects.exists()  # the service has no callback URL
