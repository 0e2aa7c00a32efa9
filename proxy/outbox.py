"""The outbox base: how work that leaves the database is queued, retried and recovered.

An outbox row (an SMS, a callback, a recording download, a number check) is written in
the transaction that caused it; a Celery task works it after commit. This module knows
none of its users: each kind declares itself with ``outbox_kind`` (its task, its retry
policy and how to find rows whose task was lost), and the redrive walks whatever kinds
are declared. Work is queued by task name, so nothing that writes a row imports a task
module.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from config.celery import app
from config.redis_guard import REDIS

logger = logging.getLogger("proxy.outbox")

Result = Literal["done", "failed", "skipped", "retry"]


@dataclass(frozen=True)
class Outcome:
    """What one attempt at an outbox row came to: ``result`` for the log; ``retry_in``
    (seconds) when the task should run again."""

    result: Result
    retry_in: float | None = None
    detail: str = ""

    @classmethod
    def done(cls, detail: str = "") -> Outcome:
        return cls("done", None, detail)

    @classmethod
    def failed(cls, detail: str = "") -> Outcome:
        return cls("failed", None, detail)

    @classmethod
    def skipped(cls, detail: str = "") -> Outcome:
        return cls("skipped", None, detail)

    @classmethod
    def retry(cls, seconds: float, detail: str = "") -> Outcome:
        return cls("retry", seconds, detail)


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped, full jitter.

    Full jitter spreads retries of many rows that failed together (a throttling burst)
    instead of sending them back in lockstep.
    """
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return max(1.0, random.uniform(ceiling / 2, ceiling))


@dataclass(frozen=True)
class RetryPolicy:
    """How one outbox kind retries: exponential backoff from ``base_seconds`` up to
    ``cap_seconds``, at most ``max_attempts`` tries (None: bounded by time instead)."""

    base_seconds: float
    cap_seconds: float
    max_attempts: int | None = None

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, base=self.base_seconds, cap=self.cap_seconds)

    def exhausted(self, attempts: int) -> bool:
        return self.max_attempts is not None and attempts >= self.max_attempts


# A worker holds a row it claimed this long; past it, the row is due again. Longer than
# an outbox task may run (TASK_TIME_LIMITS, enforced by prefork workers), so a slow
# attempt is never doubled.
LEASE = timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
TASK_TIME_LIMITS = {"soft_time_limit": 30, "time_limit": 40}
# Past due this long, a row's task is presumed lost (broker emptied, worker killed) and
# the redrive (beat, every OUTBOX_REDRIVE_EVERY_SECONDS: config.celery) queues it again:
# recovery within LEASE + GRACE + that period.
REDRIVE_GRACE = timedelta(seconds=settings.OUTBOX_REDRIVE_GRACE_SECONDS)
# A row the redrive queued is not queued again for this long: its message is probably still
# waiting behind others. As long as a claimed row takes to be lost again, so it never delays
# a recovery. Remembered in the cache: a Redis that comes back empty forgets it with the
# messages, and everything is queued at once.
REQUEUE_QUIET = LEASE + REDRIVE_GRACE
# Past due by this much, rows pile up: /health and the redrive say so.
BACKLOG_AGE = timedelta(minutes=5)


@dataclass(frozen=True)
class OutboxKind:
    """One kind of outbox row.

    ``task``: the Celery task that works one row, called with the row's ``task_arg``.
    ``waiting``: a queryset factory of the rows still to be worked (queued, pending),
    whatever their due time. ``due_field`` holds when each is next due: unset until
    its first attempt (due since ``created_field``), the lease's end while a worker
    holds it, the retry's time after a failed attempt. A row due (past ``REDRIVE_GRACE``)
    has lost its task; one whose retry is scheduled for later is not.
    ``redrive_order``: kinds whose work others wait for are redriven first (lower first).
    """

    name: str
    task: str
    retry: RetryPolicy
    waiting: Callable[[], QuerySet[Any]]
    due_field: str = "next_attempt_at"
    created_field: str = "created_at"
    task_arg: str = "pk"
    service_field: str = "service__slug"
    redrive_order: int = 100

    def _due_by(self, moment: datetime) -> Q:
        return Q(**{f"{self.due_field}__lte": moment}) | Q(
            **{f"{self.due_field}__isnull": True, f"{self.created_field}__lte": moment}
        )

    def lost(self, now: datetime, limit: int) -> list[Any]:
        """The task arguments of rows past due by the grace, oldest first (at most ``limit``)."""
        rows = self.waiting().filter(self._due_by(now - REDRIVE_GRACE))
        order = F(self.due_field).asc(nulls_first=True)
        ids = rows.order_by(order, self.created_field).values_list(self.task_arg, flat=True)[: limit * 2]
        # A conversation's two participants give its id twice: keep the order, drop repeats.
        return list(dict.fromkeys(ids))[:limit]

    def backlog(self, now: datetime) -> tuple[int, float | None]:
        """Rows past due by the grace, and how long the oldest has been due (seconds)."""
        rows = self.waiting().filter(self._due_by(now - REDRIVE_GRACE))
        figures = rows.aggregate(
            count=Count("pk"),
            oldest_due=Min(self.due_field),
            oldest_new=Min(self.created_field, filter=Q(**{f"{self.due_field}__isnull": True})),
        )
        oldest = [moment for moment in (figures["oldest_due"], figures["oldest_new"]) if moment is not None]
        if not figures["count"] or not oldest:
            return figures["count"], None
        return figures["count"], max(0.0, (now - min(oldest)).total_seconds())

    def backlog_by_service(self, now: datetime, *, top: int = 5) -> dict[str, int]:
        """The services with the most rows past due by the grace (slug: rows)."""
        rows = self.waiting().filter(self._due_by(now - REDRIVE_GRACE)).order_by()
        counts = rows.values_list(self.service_field).annotate(rows=Count("pk")).order_by("-rows")[:top]
        return {str(slug or "-"): count for slug, count in counts}

    def claim(self, key: Any, *, now: datetime, **changes: Any) -> bool:
        """Take the row(s) of ``key`` for ``LEASE`` if due and still waiting; False when another
        worker holds them or they are not due. ``changes`` are written in the same update."""
        rows = self.waiting().filter(**{self.task_arg: key}).filter(self._due_by(now))
        return bool(rows.update(**{self.due_field: now + LEASE}, **changes))


_KINDS: dict[str, OutboxKind] = {}


def outbox_kind(kind: OutboxKind) -> OutboxKind:
    """Declare an outbox kind (at import time of the module that writes its rows)."""
    _KINDS[kind.name] = kind
    return kind


def outbox_kinds() -> list[OutboxKind]:
    """The declared kinds, in redrive order."""
    return sorted(_KINDS.values(), key=lambda kind: (kind.redrive_order, kind.name))


def _task(name: str) -> Any:
    if name not in app.tasks:
        # Task modules are imported by the worker at start-up; a web process imports them
        # the first time it queues something.
        app.loader.import_default_modules()
    return app.tasks[name]


def queue_now(task_name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue ``task_name(*args)`` now (to run ``countdown`` seconds later). Raises when the
    broker cannot take it. Run eagerly (no broker), the countdown is not waited for."""
    task = _task(task_name)
    if countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args, countdown=countdown)


def queue_on_commit(task_name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue ``task_name(*args)`` once the current transaction commits (at once outside one).

    A broker that is down must not turn a committed request into a 500: the outbox row
    is already safe in the database and the periodic redrive queues it again.
    """

    def send() -> None:
        broker = not app.conf.task_always_eager
        if broker and not REDIS.allows():
            # Redis failed moments ago: don't wait on it again; the row is due, and the
            # redrive queues it once Redis is back.
            logger.info("not queuing %s%r: Redis is away; the outbox redrive will", task_name, args)
            return
        try:
            queue_now(task_name, *args, countdown=countdown)
        except Exception as exc:
            if broker:
                REDIS.failed(exc)
            logger.warning("could not queue %s%r (%s); the outbox redrive will", task_name, args, type(exc).__name__)
        else:
            if broker:
                REDIS.succeeded()

    transaction.on_commit(send, robust=True)


def truncate(message: str, limit: int = 500) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


# --- Redrive -------------------------------------------------------------------------------------

REDRIVE_BATCH = 1000


def _requeue_key(kind: OutboxKind, key: Any) -> str:
    # Per database: deployments (and test runs) sharing one Redis keep apart.
    return f"outbox:requeued:{connection.settings_dict['NAME']}:{kind.name}:{key}"


def _not_recently_requeued(kind: OutboxKind, keys: list[Any]) -> list[Any]:
    """Drop the rows the redrive queued less than ``REQUEUE_QUIET`` ago: their message is
    most likely still waiting behind others, and copies would only lengthen the queue."""
    if not keys or not REQUEUE_QUIET:
        return keys
    try:
        seen = cache.get_many([_requeue_key(kind, key) for key in keys])
    except Exception:
        logger.warning("outbox redrive: cache unreadable; queuing every overdue row", exc_info=True)
        return keys
    return [key for key in keys if _requeue_key(kind, key) not in seen]


def _remember_requeued(kind: OutboxKind, keys: list[Any]) -> None:
    if not keys or not REQUEUE_QUIET:
        return
    try:
        cache.set_many({_requeue_key(kind, key): 1 for key in keys}, timeout=int(REQUEUE_QUIET.total_seconds()))
    except Exception:
        logger.warning("outbox redrive: could not remember what it queued", exc_info=True)


def outbox_redrive(*, now: datetime | None = None, limit: int = REDRIVE_BATCH) -> dict[str, int]:
    """Queue again every row past due by the grace, per declared kind; how many of each.

    Idempotent: the tasks claim their rows, so a row queued twice is worked once. A
    backlog (rows due for more than ``BACKLOG_AGE``) is logged at WARNING.
    """
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for kind in outbox_kinds():
        keys = _not_recently_requeued(kind, kind.lost(now, limit))
        for key in keys:
            queue_now(kind.task, key)
        _remember_requeued(kind, keys)
        counts[kind.name] = len(keys)
        if keys:
            pending, oldest = kind.backlog(now)
            if oldest is not None and oldest >= BACKLOG_AGE.total_seconds():
                services = kind.backlog_by_service(now)
                logger.warning(
                    "outbox backlog: %s %s rows past due, the oldest for %.0f s; services %s",
                    pending,
                    kind.name,
                    oldest,
                    services,
                    extra={
                        "outbox": kind.name,
                        "past_due": pending,
                        "oldest_seconds": round(oldest),
                        "services": services,
                    },
                )
    if any(counts.values()):
        logger.info("outbox redrive queued %s", counts)
    return counts


# --- Delivery receipts of sent texts ------------------------------------------------------------


def receipt_row(rows: QuerySet[Any], params: dict[str, str], *, client_ref_prefix: str) -> Any:
    """The row of ``rows`` (an outbox of texts: ``message_id``, ``to_number``) a Vonage delivery
    receipt is about, or None: by Vonage's message id, else by our ``client-ref``
    (``<prefix><pk>``, ASCII digits few enough for a bigint: ``isdigit()`` also takes "²");
    never when the receipt names another recipient."""
    message_id = params.get("messageId") or params.get("message-id") or ""
    candidate = None
    if message_id:
        candidate = rows.filter(message_id=message_id).order_by("-pk").first()
    ref = params.get("client-ref") or ""
    pk = ref[len(client_ref_prefix) :] if ref.startswith(client_ref_prefix) else ""
    if candidate is None and _CLIENT_REF_PK.fullmatch(pk):
        candidate = rows.filter(pk=int(pk)).first()
        if candidate is not None and message_id and candidate.message_id not in ("", message_id):
            # Another part of a multipart text: its first part's receipt speaks for it.
            candidate = None
    msisdn = re.sub(r"\D", "", params.get("msisdn") or params.get("to") or "")
    if candidate is not None and msisdn and msisdn != candidate.to_number:
        return None
    return candidate


_CLIENT_REF_PK = re.compile(r"[0-9]{1,18}")
