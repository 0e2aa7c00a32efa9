"""Retention: the personal data of a conversation goes once it has been over for its
service's ``retention_days``.

``retention_apply`` (a beat task, daily) walks each service's conversations that ended
before ``now - retention_days`` (never more than ``RETENTION_MAX_DAYS``) and have not been
redacted yet, in batches taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` (on PostgreSQL;
two runs at once share the work instead of waiting on each other). In each batch's
transaction every registered kind of personal data is redacted, then the conversations
are marked ``redacted_at``. It is idempotent: a batch that fails rolls back whole and is
taken up again by the next run, and a kind only touches what still holds data. What it
did is logged, per kind, and returned.

Built-in kinds: recording and transcript files (deleted from storage, rows marked
``deleted``), participants' real numbers and names, the real numbers in the call log,
raw event payloads of the conversation's calls, and the SMS texts and numbers of its
notifications. The rows stay, so counts, durations and prices remain for accounting.
Data that belongs to no conversation (events and calls of unknown callers, SMS receipts
and inbound SMS) follows ``CALL_EVENT_RETENTION_DAYS`` instead.

Another kind of personal data plugs in with one registered function, in the module that
writes those rows (imported in ``ProxyConfig.ready``, like the outbox kinds)::

    from proxy.retention import PersonalData, personal_data

    def _messages_redact(conversation_ids: list[UUID]) -> int:
        return Message.objects.filter(conversation_id__in=conversation_ids).exclude(text="").update(text="")

    personal_data(PersonalData(name="messages", redact=_messages_redact))

``redact`` gets the ids of one batch of due conversations, runs inside the batch's
transaction (raise to roll the batch back), must only touch rows of those conversations,
must be idempotent, and returns how many rows (or files) it changed, for the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from proxy.models import (
    Call,
    CallEvent,
    Conversation,
    CopiedFile,
    Notification,
    Participant,
    Recording,
    Service,
    Transcript,
)
from webhooks.payloads import REDACTED_PAYLOAD

logger = logging.getLogger("proxy.retention")

BATCH = 1000


@dataclass(frozen=True)
class PersonalData:
    """One kind of personal data tied to conversations. ``redact(conversation_ids) -> count``:
    see the module's docstring for its contract. Lower ``order`` runs first.

    ``redact_unowned(service, cutoff) -> count``, when given: rows of this kind that belong
    to no conversation but to ``service`` (texts from strangers, say), older than
    ``cutoff``; they follow the service's retention too. Idempotent, like ``redact``.
    """

    name: str
    redact: Callable[[list[Any]], int]
    order: int = 100
    redact_unowned: Callable[[Service, datetime], int] | None = None


_KINDS: dict[str, PersonalData] = {}


def personal_data(kind: PersonalData) -> PersonalData:
    """Register a kind of personal data (at import time of the module that writes it)."""
    _KINDS[kind.name] = kind
    return kind


def personal_data_kinds() -> list[PersonalData]:
    return sorted(_KINDS.values(), key=lambda kind: (kind.order, kind.name))


def retention_days(service: Service) -> int:
    """The days a service keeps an ended conversation's personal data: its own setting,
    never more than the operator's ceiling (which may have been lowered since)."""
    return max(1, min(service.retention_days, settings.RETENTION_MAX_DAYS))


# --- The job ------------------------------------------------------------------------------------


def retention_apply(*, now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Redact every conversation past its service's retention, then the data of no
    conversation past ``CALL_EVENT_RETENTION_DAYS``. Returns what it changed, per kind."""
    now = now or timezone.now()
    counts: Counter[str] = Counter()
    for service in Service.objects.only("pk", "slug", "retention_days").order_by("pk"):
        cutoff = now - timedelta(days=retention_days(service))
        due = Conversation.objects.filter(service_id=service.pk, redacted_at__isnull=True, ended_at__lt=cutoff)
        done = _in_batches(
            due.order_by("ended_at"), batch, lambda ids: _redact_conversations(ids, now), counts, service.slug
        )
        if done:
            logger.info("retention: %s conversations of %s redacted", done, service.slug)
        for kind in personal_data_kinds():
            if kind.redact_unowned is not None and (count := _unowned_kind_redact(kind, service, cutoff)):
                counts[f"unowned_{kind.name}"] += count
    counts.update(_unowned_redact(now=now, batch=batch))
    if any(counts.values()):
        logger.info("retention: %s", dict(sorted(counts.items())))
    return dict(counts)


def _in_batches(
    due: Any, batch: int, redact: Callable[[list[Any]], Counter[str]], counts: Counter[str], what: str
) -> int:
    """Lock, redact and commit batches of ``due`` rows, in its order (skipping rows another
    run holds), until none is left; a batch that fails is logged and left for the next run.
    Each batch drops out of ``due`` once redacted, so each takes the head of an index."""
    total = 0
    while True:
        try:
            with transaction.atomic():
                locked = due.select_for_update(skip_locked=True, of=("self",))
                ids = list(locked.values_list("pk", flat=True)[:batch])
                if not ids:
                    return total
                counts.update(redact(ids))
        except Exception:
            logger.exception("retention: a batch of %s failed; the next run takes it up again", what)
            counts["failed_batches"] += 1
            return total
        total += len(ids)


def _redact_conversations(ids: list[Any], now: datetime) -> Counter[str]:
    changed: Counter[str] = Counter()
    for kind in personal_data_kinds():
        # Only what changed something is reported (and logged).
        if count := kind.redact(ids):
            changed[kind.name] += count
    changed["conversations"] += Conversation.objects.filter(pk__in=ids).update(redacted_at=now)
    return changed


def _unowned_kind_redact(kind: PersonalData, service: Service, cutoff: datetime) -> int:
    """One kind's rows of no conversation; a failure is logged and left for the next run."""
    assert kind.redact_unowned is not None
    try:
        with transaction.atomic():
            return kind.redact_unowned(service, cutoff)
    except Exception:
        logger.exception("retention: %s of no conversation of %s failed; the next run retries", kind.name, service.slug)
        return 0


def _unowned_redact(*, now: datetime, batch: int) -> Counter[str]:
    """Events and calls that belong to no conversation, past CALL_EVENT_RETENTION_DAYS (0: kept)."""
    counts: Counter[str] = Counter()
    keep_days = settings.CALL_EVENT_RETENTION_DAYS
    if keep_days <= 0:
        return counts
    cutoff = now - timedelta(days=keep_days)
    unowned = Q(call__isnull=True) | Q(call__conversation__isnull=True)
    events = CallEvent.objects.filter(unowned, payload_redacted=False, received_at__lt=cutoff).order_by("received_at")
    _in_batches(events, batch, lambda ids: Counter(unowned_events=_events_redact(Q(pk__in=ids))), counts, "events")
    calls = (
        Call.objects.filter(conversation__isnull=True, created_at__lt=cutoff)
        .exclude(from_number="", to_number="")
        .order_by("created_at")
    )
    _in_batches(calls, batch, lambda ids: Counter(unowned_calls=_calls_redact(Q(pk__in=ids))), counts, "calls")
    return counts


# --- Built-in kinds ----------------------------------------------------------------------------


def _events_redact(where: Q) -> int:
    return CallEvent.objects.filter(where, payload_redacted=False).update(
        payload=REDACTED_PAYLOAD, payload_redacted=True
    )


def _calls_redact(where: Q) -> int:
    return Call.objects.filter(where).exclude(from_number="", to_number="").update(from_number="", to_number="")


def _files_delete(model: type[CopiedFile], ids: list[Any]) -> int:
    """Delete the copied files from storage, then mark the rows. A storage error rolls the
    batch back before any row says ``deleted`` while its file is still there."""
    rows = model._default_manager.filter(conversation_id__in=ids).exclude(status=CopiedFile.Status.DELETED)
    deleted = 0
    for row in rows.exclude(file="").only("pk", "file"):
        row.file.delete(save=False)
        deleted += 1
    rows.update(status=CopiedFile.Status.DELETED, file="", last_error="", next_attempt_at=None)
    return deleted


personal_data(PersonalData("recording_files", lambda ids: _files_delete(Recording, ids), order=10))
personal_data(PersonalData("transcript_files", lambda ids: _files_delete(Transcript, ids), order=10))
personal_data(
    PersonalData(
        "participants",
        lambda ids: (
            Participant.objects.filter(conversation_id__in=ids)
            .exclude(real_number="", name="")
            .update(real_number="", name="")
        ),
    )
)
personal_data(PersonalData("calls", lambda ids: _calls_redact(Q(conversation_id__in=ids))))
personal_data(PersonalData("call_events", lambda ids: _events_redact(Q(call__conversation_id__in=ids))))
personal_data(
    PersonalData(
        "notifications",
        lambda ids: (
            Notification.objects.filter(participant__conversation_id__in=ids)
            .exclude(text="", to_number="")
            .update(text="", to_number="")
        ),
    )
)
