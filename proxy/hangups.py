"""Hanging up the calls of ended conversations, writer side: the call-control outbox.

Closing a conversation (the API, the admin, the expiry sweep) ends its calls in progress.
The closing transaction writes one ``CallHangup`` row per leg still in progress; a worker
(``proxy.delivery.hangups``) asks the provider to hang it up (Vonage's
``PUT /v1/calls/{uuid}`` with ``hangup``; the sandbox plays it), never the request.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from proxy.models import Call, CallHangup
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind
from webhooks.payloads import TERMINAL_STATUSES

HANGUP_TASK = "proxy.tasks.hang_up_call"
FAN_OUT_TASK = "proxy.tasks.hang_up_calls"
# No call outlives Vonage's longest limit (7200 s) and ringing: an older leg that never
# told us it ended is stale, not in progress.
LONGEST_CALL = timedelta(hours=3)
_CHUNK = 2000


def hangups_create_for_conversations(*, conversation_ids: Iterable[Any], now: datetime | None = None) -> list[int]:
    """One pending hang-up per leg of these conversations still in progress; their ids.

    A leg is in progress when no terminal status or end time has reached us and it began
    within ``LONGEST_CALL``. Set-based: a query per chunk of conversations.
    """
    now = now or timezone.now()
    ids = list(conversation_ids)
    created: list[int] = []
    for start in range(0, len(ids), _CHUNK):
        legs = (
            Call.objects.filter(conversation_id__in=ids[start : start + _CHUNK], ended_at__isnull=True)
            .filter(created_at__gte=now - LONGEST_CALL)
            .exclude(status__in=TERMINAL_STATUSES)
            .values_list("pk", flat=True)
        )
        rows = [CallHangup(call_id=pk, created_at=now) for pk in legs]
        if rows:
            created.extend(row.pk for row in CallHangup.objects.bulk_create(rows))
    if any(pk is None for pk in created):
        # SQLite before 3.35 returns no ids from a bulk insert.
        created = list(
            CallHangup.objects.filter(created_at=now, status=CallHangup.Status.PENDING).values_list("pk", flat=True)
        )
    return created


def _pending() -> QuerySet[CallHangup]:
    return CallHangup.objects.filter(status=CallHangup.Status.PENDING)


HANGUPS = outbox_kind(
    OutboxKind(
        name="hangups",
        task=HANGUP_TASK,
        # A call is short: retrying for longer than a few minutes is pointless.
        retry=RetryPolicy(base_seconds=5.0, cap_seconds=60.0, max_attempts=6),
        waiting=_pending,
        service_field="call__service__slug",
        redrive_order=10,
    )
)
