"""Text delivery: send one queued text through the provider, at most once per claim; join
concatenated parts whose wait is over."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from proxy.message_outbox import (
    MESSAGES,
    SEND_TASK,
    client_ref_for,
    message_status_set,
    messages_wake,
    messages_wake_taken,
)
from proxy.message_parts import message_parts_join_due
from proxy.models import Message
from proxy.outbox import Outcome, queue_now, truncate
from proxy.phone import mask
from proxy.selectors import message_to_send
from telephony.provider import ProviderError
from telephony.registry import get_provider

logger = logging.getLogger(__name__)

# A text is due a little before its time: the web process that queued it may run a clock
# slightly ahead of this worker's, and a fresh relay must not wait for the redrive.
CLOCK_SKEW = timedelta(seconds=5)


def _fail(message: Message, error: str, *, attempts: int | None = None, reason: str = "") -> Outcome:
    changes: dict[str, object] = {"last_error": truncate(error), "next_attempt_at": None}
    if attempts is not None:
        changes["attempts"] = attempts
    if reason:
        changes["reason"] = reason
    message_status_set(message, status=Message.Status.FAILED, **changes)
    logger.info("text %s to %s failed: %s", message.pk, mask(message.to_number), error)
    return Outcome.failed(error)


def message_send(*, message_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at sending the queued text ``message_id`` and record how it went.

    The row is locked (``SKIP LOCKED``) from its read to the record of the attempt, in
    one transaction: a second worker holding the same task skips it, and a worker that
    dies mid-send leaves it queued and due, for the redrive. Temporary provider errors
    leave it queued with ``last_error`` and a later ``next_attempt_at`` (bounded by the
    kind's retry policy); permanent ones fail it. A recipient who opted out since gets
    nothing. A text not due yet, or no longer queued, is left alone.
    """
    now = now or timezone.now()
    with transaction.atomic():
        return _send_locked(message_to_send(message_id=message_id), now=now)


def message_send_next(*, now: datetime | None = None) -> tuple[int, Outcome] | None:
    """Send the queued text due first, as ``message_send`` would; None when none is due
    (or every due one is held by another worker)."""
    now = now or timezone.now()
    with transaction.atomic():
        found = message_to_send(due_by=now + CLOCK_SKEW)
        if found is None:
            return None
        return found[0].pk, _send_locked(found, now=now)


def messages_drain(*, budget_seconds: float = 20.0) -> int:
    """Send every due text, one transaction each, until none is due; how many were tried.

    Woken by fresh texts (``message_outbox.messages_wake``); several run side by side,
    each skipping the texts another holds. A text that fails for now gets its own retry
    task. Past ``budget_seconds`` it hands over to a fresh drain rather than hold the
    worker for ever under a steady flow.
    """
    messages_wake_taken()
    deadline = time.monotonic() + budget_seconds
    tried = 0
    while time.monotonic() < deadline:
        sent = message_send_next()
        if sent is None:
            return tried
        message_id, outcome = sent
        tried += 1
        if outcome.retry_in is not None:
            queue_now(SEND_TASK, message_id, countdown=outcome.retry_in)
    messages_wake()
    return tried


def _send_locked(found: tuple[Message, bool] | None, *, now: datetime) -> Outcome:
    if found is None or found[0].status != Message.Status.QUEUED:
        return Outcome.skipped("not queued, or being sent by another worker")
    message, recipient_opted_out = found
    if message.next_attempt_at is not None and message.next_attempt_at > now + CLOCK_SKEW:
        return Outcome.skipped("not due")
    if recipient_opted_out:
        return _fail(message, "Not sent: the recipient opted out (STOP).", reason=Message.Reason.RECIPIENT_OPTED_OUT)
    if MESSAGES.retry.exhausted(message.attempts):
        return _fail(message, f"Gave up after {message.attempts} attempts: {message.last_error}")
    return _attempt(message, attempt=message.attempts + 1)


def _attempt(message: Message, *, attempt: int) -> Outcome:
    try:
        result = get_provider().send_sms(
            from_number=message.from_number,
            to_number=message.to_number,
            text=message.text,
            client_ref=client_ref_for(message),
            callback_url=f"{settings.PUBLIC_URL}/webhooks/sms/status",
        )
    except ProviderError as exc:
        error, permanent = str(exc), exc.permanent
    except Exception as exc:
        # An unexpected error must still leave the row in a known, retryable state. Its
        # message is not logged: it may quote the request, and so the text.
        logger.error("text %s: unexpected %s from the provider", message.pk, type(exc).__name__)
        error, permanent = type(exc).__name__, False
    else:
        message_status_set(
            message,
            status=Message.Status.SENT,
            attempts=attempt,
            message_id=result.message_id,
            price=result.price,
            last_error="",
            next_attempt_at=None,
        )
        logger.info("text %s sent to %s as %s", message.pk, mask(message.to_number), result.message_id)
        return Outcome.done(result.message_id)

    if permanent:
        return _fail(message, error, attempts=attempt)
    if MESSAGES.retry.exhausted(attempt):
        return _fail(message, f"Gave up after {attempt} attempts: {error}", attempts=attempt)
    delay = MESSAGES.retry.delay(attempt)
    Message.objects.filter(pk=message.pk).update(
        attempts=attempt,
        last_error=truncate(error),
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        updated_at=timezone.now(),
    )
    logger.info("text %s attempt %s failed (%s); retrying in %.0fs", message.pk, attempt, error, delay)
    return Outcome.retry(delay, error)


def message_parts_join(*, part_id: int, now: datetime | None = None) -> Outcome:
    """A concatenated text's timer: join its parts once their wait is over (retry until then)."""
    joining = message_parts_join_due(part_id=part_id, now=now)
    if joining.due_in is not None:
        return Outcome.retry(joining.due_in, "parts still within their wait")
    if joining.message is None:
        return Outcome.skipped("already joined")
    return Outcome.done(str(joining.message.pk))
