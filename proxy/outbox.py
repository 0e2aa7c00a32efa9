"""What every outbox worker function reports back to its task: done, or try again later."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger("proxy.outbox")

Result = Literal["done", "failed", "skipped", "retry"]


@dataclass(frozen=True)
class Outcome:
    """``result`` for the log; ``retry_in`` (seconds) when the task should run again."""

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


def enqueue_on_commit(task: object, *args: object) -> None:
    """Queue ``task(*args)`` once the current transaction commits (at once outside one).

    A broker that is down must not turn a committed API request into a 500: the outbox
    row is already safe in the database and the periodic redrive queues it again.
    """

    def send() -> None:
        try:
            task.delay(*args)  # type: ignore[attr-defined]
        except Exception:
            logger.exception("could not queue %s%r; the outbox redrive will", getattr(task, "name", task), args)

    transaction.on_commit(send, robust=True)


def truncate(message: str, limit: int = 500) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


# --- Redrive -------------------------------------------------------------------------------------

# A row queued this long with no progress has lost its task (broker or worker down).
# Longer than any retry countdown (SMS: 10 minutes), so a waiting retry is not doubled.
STALE_AFTER_SECONDS = 15 * 60
REDRIVE_BATCH = 1000


@dataclass(frozen=True)
class Stale:
    notifications: list[int]
    callbacks: list[int]
    recordings: list[int]
    validations: list[str]


def outbox_stale(*, now: datetime | None = None, limit: int = REDRIVE_BATCH) -> Stale:
    """Rows whose task was lost: queued SMS, due callbacks, pending downloads and validations."""
    from proxy.models import CallbackDelivery, Notification, Participant, Recording
    from proxy.notifications import MAX_ATTEMPTS as SMS_MAX
    from proxy.recording_files import MAX_ATTEMPTS as RECORDING_MAX

    now = now or timezone.now()
    stale = now - timedelta(seconds=STALE_AFTER_SECONDS)
    notifications = Notification.objects.filter(status=Notification.Status.QUEUED, updated_at__lt=stale).order_by(
        "updated_at"
    )
    # A callback past its next attempt time (or never tried) for a minute: its task is gone.
    overdue = now - timedelta(minutes=1)
    callbacks = CallbackDelivery.objects.filter(status=CallbackDelivery.Status.PENDING).filter(
        Q(next_attempt_at__lte=overdue) | Q(next_attempt_at__isnull=True, created_at__lte=overdue)
    )
    recordings = Recording.objects.filter(status=Recording.Status.PENDING, attempts__lt=RECORDING_MAX).filter(
        Q(next_attempt_at__lte=overdue) | Q(next_attempt_at__isnull=True, created_at__lt=stale)
    )
    validations = (
        Participant.objects.filter(validation=Participant.Validation.PENDING, active=True, created_at__lt=stale)
        .order_by()
        .values_list("conversation_id", flat=True)
        .distinct()
    )
    return Stale(
        notifications=list(notifications.filter(attempts__lte=SMS_MAX).values_list("pk", flat=True)[:limit]),
        callbacks=list(callbacks.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]),
        recordings=list(recordings.values_list("pk", flat=True)[:limit]),
        validations=[str(pk) for pk in validations[:limit]],
    )
