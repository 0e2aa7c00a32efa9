"""``/health``: is the database there, is Redis there, is a worker listening, is the outbox moving.

200 when the database (and Redis, when configured) answer: the web tier can serve.
503 when either does not. Workers and outbox backlog are reported, not fatal: the web
tier keeps accepting work while workers are away, and the outbox keeps it safe.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

WORKER_PING_TIMEOUT = 1.0
HEARTBEAT_STALE_SECONDS = 120


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def _redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "configured": False}
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True, "configured": True}


def _workers() -> dict[str, Any]:
    from config.celery import WORKER_HEARTBEAT_KEY, app

    if app.conf.task_always_eager:
        return {"ok": True, "mode": "in-process"}
    from django.core.cache import cache

    heartbeat = cache.get(WORKER_HEARTBEAT_KEY)
    age = round(time.time() - heartbeat, 1) if heartbeat else None
    replies = app.control.ping(timeout=WORKER_PING_TIMEOUT, limit=1) or []
    return {
        "ok": bool(replies),
        "mode": "broker",
        "responding": [name for reply in replies for name in reply],
        "beat_heartbeat_age_seconds": age,
        "beat_ok": age is not None and age < HEARTBEAT_STALE_SECONDS,
    }


def _outbox() -> dict[str, Any]:
    from proxy.models import CallbackDelivery, Message, Notification
    from proxy.outbox import STALE_AFTER_SECONDS

    now = timezone.now()
    stale = now - timedelta(seconds=STALE_AFTER_SECONDS)
    stuck_sms = Notification.objects.filter(status=Notification.Status.QUEUED, updated_at__lt=stale).count()
    # Past the redrive's own minute, so what it fixes never shows: a delivery due (or,
    # never tried, created) five minutes ago and still pending is stuck.
    late = now - timedelta(minutes=5)
    overdue_callbacks = (
        CallbackDelivery.objects.filter(status=CallbackDelivery.Status.PENDING)
        .filter(Q(next_attempt_at__lt=late) | Q(next_attempt_at__isnull=True, created_at__lt=late))
        .count()
    )
    overdue_messages = Message.objects.filter(status=Message.Status.QUEUED, next_attempt_at__lt=late).count()
    return {
        "ok": not stuck_sms and not overdue_callbacks and not overdue_messages,
        "stuck_sms": stuck_sms,
        "overdue_callbacks": overdue_callbacks,
        "overdue_messages": overdue_messages,
    }


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: database, Redis and worker state."""
    checks: dict[str, dict[str, Any]] = {"database": _timed(_database), "redis": _timed(_redis)}
    serving = checks["database"]["ok"] and checks["redis"]["ok"]
    if serving:
        checks["workers"] = _timed(_workers)
        checks["outbox"] = _timed(_outbox)
    if not serving:
        status = "error"
    elif all(check["ok"] for check in checks.values()):
        status = "ok"
    else:
        status = "degraded"
    if not _may_see_details(request):
        checks = {name: {k: v for k, v in check.items() if k not in _DETAILS} for name, check in checks.items()}
    return JsonResponse({"status": status, "checks": checks}, status=200 if serving else 503)


# Exception texts name hosts and ports; worker names are host names.
_DETAILS = frozenset({"error", "responding"})
DETAILS_PERMISSION = "proxy.view_callbackdelivery"


def _may_see_details(request: HttpRequest) -> bool:
    """Staff who watch the platform (Operators, Administrators); a load balancer sees the verdicts."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff and user.has_perm(DETAILS_PERMISSION))
