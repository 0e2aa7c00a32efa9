"""Call recordings, writer side: the outbox kind of recordings waiting to be copied from Vonage."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q

from proxy.models import Recording
from proxy.outbox import STALE_AFTER_SECONDS, OutboxKind, RetryPolicy, outbox_kind

DOWNLOAD_TASK = "proxy.tasks.download_recording"
# Vonage deletes recordings after 30 days; trying later is pointless.
AVAILABLE_FOR = timedelta(days=30)


def _lost(now: datetime, limit: int) -> list[int]:
    """Pending downloads past their backoff for a minute, or never tried for longer than any wait."""
    overdue = now - timedelta(minutes=1)
    stale = now - timedelta(seconds=STALE_AFTER_SECONDS)
    rows = Recording.objects.filter(status=Recording.Status.PENDING, attempts__lt=RECORDINGS.retry.max_attempts).filter(
        Q(next_attempt_at__lte=overdue) | Q(next_attempt_at__isnull=True, created_at__lt=stale)
    )
    return list(rows.values_list("pk", flat=True)[:limit])


RECORDINGS = outbox_kind(
    OutboxKind(
        name="recordings",
        task=DOWNLOAD_TASK,
        retry=RetryPolicy(base_seconds=30.0, cap_seconds=1800.0, max_attempts=10),
        lost=_lost,
    )
)
