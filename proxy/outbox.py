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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from django.utils import timezone

from config.celery import app

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


@dataclass(frozen=True)
class OutboxKind:
    """One kind of outbox row.

    ``task``: the Celery task that works one row, called with the row's id.
    ``lost``: ``lost(now, limit)`` returns the ids of rows still waiting for work whose
    task can no longer be relied on (broker or worker gone), oldest first. It must not
    return rows waiting on purpose (a retry scheduled for later).
    ``redrive_order``: kinds whose work others wait for are redriven first (lower first).
    """

    name: str
    task: str
    retry: RetryPolicy
    lost: Callable[[datetime, int], list[Any]]
    redrive_order: int = 100


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
        try:
            queue_now(task_name, *args, countdown=countdown)
        except Exception:
            logger.exception("could not queue %s%r; the outbox redrive will", task_name, args)

    transaction.on_commit(send, robust=True)


def truncate(message: str, limit: int = 500) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


# --- Redrive -------------------------------------------------------------------------------------

# A row queued this long with no progress has lost its task (broker or worker down).
# Longer than any retry countdown (SMS: 10 minutes), so a waiting retry is not doubled.
STALE_AFTER_SECONDS = 15 * 60
REDRIVE_BATCH = 1000


def outbox_redrive(*, now: datetime | None = None, limit: int = REDRIVE_BATCH) -> dict[str, int]:
    """Queue again every row whose task was lost, per declared kind; how many of each.

    Idempotent: the tasks claim their rows, so a row queued twice is worked once.
    """
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for kind in outbox_kinds():
        ids = kind.lost(now, limit)
        for pk in ids:
            queue_now(kind.task, pk)
        counts[kind.name] = len(ids)
    if any(counts.values()):
        logger.info("outbox redrive queued %s", counts)
    return counts
