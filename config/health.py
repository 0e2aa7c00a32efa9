"""Health endpoints (DESIGN.md, "Health").

- ``/health/live``: 200 ``{"status": "ok"}`` while the process serves. Touches nothing.
- ``/health/ready``: 200 when PostgreSQL answers, else 503. Redis and workers never fail
  it: the webhooks and the API serve without them (the outboxes keep the work).
- ``/health``: the full report. 503 only when the database does not answer; Redis,
  workers and outbox backlogs make it ``degraded`` (200). Only staff with
  ``DETAILS_PERMISSION`` see exception text and host names; everyone else, the verdicts.
  Nothing in it waits long: Redis is asked with the cache's short timeouts, and the
  worker ping is asked at most once per ``PING_CACHE_SECONDS`` (its answer is kept in
  the cache and in the process).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

WORKER_PING_TIMEOUT = 0.5
PING_CACHE_SECONDS = 30.0
PING_CACHE_KEY = "health:worker-ping"
HEARTBEAT_STALE_SECONDS = 120

# The last ping's answer in this process: (monotonic time, responding workers).
_last_ping: tuple[float, list[str]] | None = None


def _timed(check: Any, *, detailed: bool) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:
        result = {"ok": False}
        # Exception text can carry host names, addresses and credentials in URLs.
        if detailed:
            result["error"] = f"{type(exc).__name__}: {exc}"[:300]
        else:
            result["error"] = type(exc).__name__
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


_redis_clients: dict[str, Any] = {}


def _redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "configured": False}
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One client (and connection pool) per URL per process, with the cache's short timeouts.
    client = _redis_clients.get(settings.REDIS_URL)
    if client is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # redis.Redis would retry 3 times with backoff
        )
        _redis_clients[settings.REDIS_URL] = client
    client.ping()
    return {"ok": True, "configured": True}


def _ping_workers() -> list[str]:
    """The workers answering a ping: asked at most once per PING_CACHE_SECONDS, cluster-wide."""
    global _last_ping
    if _last_ping is not None and time.monotonic() - _last_ping[0] < PING_CACHE_SECONDS:
        return _last_ping[1]
    from django.core.cache import cache

    from config.celery import app

    try:
        responding = cache.get(PING_CACHE_KEY)
    except Exception:
        responding = None
    if responding is None:
        replies = app.control.ping(timeout=WORKER_PING_TIMEOUT) or []
        responding = sorted(name for reply in replies for name in reply)
        with contextlib.suppress(Exception):  # Redis is reported by its own check
            cache.set(PING_CACHE_KEY, responding, timeout=PING_CACHE_SECONDS)
    _last_ping = (time.monotonic(), responding)
    return responding


def _workers(*, detailed: bool) -> dict[str, Any]:
    from config.celery import WORKER_HEARTBEAT_KEY, app

    if app.conf.task_always_eager:
        return {"ok": True, "mode": "in-process"}
    from django.core.cache import cache

    heartbeat = cache.get(WORKER_HEARTBEAT_KEY)
    age = round(time.time() - heartbeat, 1) if heartbeat else None
    responding = _ping_workers()
    report: dict[str, Any] = {
        "ok": bool(responding),
        "mode": "broker",
        "responding_count": len(responding),
        "beat_heartbeat_age_seconds": age,
        "beat_ok": age is not None and age < HEARTBEAT_STALE_SECONDS,
    }
    if detailed:
        report["responding"] = responding
    return report


def _outbox() -> dict[str, Any]:
    from proxy.outbox import BACKLOG_AGE, outbox_kinds

    now = timezone.now()
    kinds: dict[str, Any] = {}
    for kind in outbox_kinds():
        past_due, oldest = kind.backlog(now)
        piling_up = oldest is not None and oldest >= BACKLOG_AGE.total_seconds()
        kinds[kind.name] = {
            "past_due": past_due,
            "oldest_past_due_seconds": None if oldest is None else round(oldest),
            "backlog": piling_up,
        }
    return {"ok": not any(kind["backlog"] for kind in kinds.values()), "kinds": kinds}


# Staff who watch the platform (Operators, Administrators) see exception texts and worker
# (host) names; a load balancer, and anyone else, sees the verdicts.
DETAILS_PERMISSION = "proxy.view_callbackdelivery"


def _may_see_details(request: HttpRequest) -> bool:
    try:
        user = request.user
        return bool(user.is_active and user.is_staff and user.has_perm(DETAILS_PERMISSION))
    except Exception:  # the session store is the database, which may be the thing that is down
        return False


@never_cache
@require_safe
def live(request: HttpRequest) -> JsonResponse:
    """200 while the process serves; nothing else is asked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL answers: this process can route calls. Redis and workers never fail it."""
    database = _timed(_database, detailed=_may_see_details(request))
    return JsonResponse(
        {"status": "ok" if database["ok"] else "error", "checks": {"database": database}},
        status=200 if database["ok"] else 503,
    )


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """The full report: database, Redis, workers and beat, outbox backlogs per kind."""
    detailed = _may_see_details(request)
    checks: dict[str, dict[str, Any]] = {
        "database": _timed(_database, detailed=detailed),
        "redis": _timed(_redis, detailed=detailed),
    }
    if checks["database"]["ok"]:
        if checks["redis"]["ok"]:
            checks["workers"] = _timed(lambda: _workers(detailed=detailed), detailed=detailed)
        checks["outbox"] = _timed(_outbox, detailed=detailed)
        status = "ok" if all(check["ok"] for check in checks.values()) else "degraded"
    else:
        status = "error"
    return JsonResponse({"status": status, "checks": checks}, status=503 if status == "error" else 200)
