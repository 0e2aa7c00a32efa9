"""Call recordings, writer side: the outbox kind of recordings waiting to be copied from Vonage."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet

from proxy.models import Recording
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind

DOWNLOAD_TASK = "proxy.tasks.download_recording"
# Vonage deletes recordings after 30 days; trying later is pointless.
AVAILABLE_FOR = timedelta(days=30)


def _waiting() -> QuerySet[Recording]:
    # Rows past their last attempt are failed by the task; the redrive still queues them once.
    return Recording.objects.filter(status=Recording.Status.PENDING)


RECORDINGS = outbox_kind(
    OutboxKind(
        name="recordings",
        task=DOWNLOAD_TASK,
        retry=RetryPolicy(base_seconds=30.0, cap_seconds=1800.0, max_attempts=10),
        waiting=_waiting,
        service_field="conversation__service__slug",
    )
)
