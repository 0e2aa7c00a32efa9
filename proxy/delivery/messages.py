"""Text delivery: send one queued text through the provider, at most once per claim; join
concatenated parts whose wait is over."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from proxy.message_outbox import MESSAGES, client_ref_for, message_status_set
from proxy.message_parts import message_parts_join_due
from proxy.models import Message
from proxy.outbox import Outcome, truncate
from proxy.phone import mask
from proxy.selectors import number_opted_out
from telephony.provider import ProviderError
from telephony.registry import get_provider

logger = logging.getLogger(__name__)

# A claimed text is left alone this long (longer than any provider request can take).
CLAIM_LEASE = timedelta(seconds=120)
# A text is due a little before its time: the web process that queued it may run a clock
# slightly ahead of this worker's, and a fresh relay must not wait for the redrive.
CLOCK_SKEW = timedelta(seconds=5)


def _fail(message: Message, error: str, *, reason: str = "") -> Outcome:
    changes: dict[str, object] = {"last_error": truncate(error), "next_attempt_at": None}
    if reason:
        changes["reason"] = reason
    message_status_set(message, status=Message.Status.FAILED, **changes)
    logger.info("text %s to %s failed: %s", message.pk, mask(message.to_number), error)
    return Outcome.failed(error)


def message_send(*, message_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at sending a queued text and record how it went.

    Temporary provider errors leave it queued with ``last_error`` and a later
    ``next_attempt_at`` (bounded by the kind's retry policy); permanent ones fail it. A
    recipient who opted out since gets nothing. A text another worker holds, one not
    due yet, or one no longer queued is left alone.
    """
    now = now or timezone.now()
    message = Message.objects.select_related("service", "conversation").filter(pk=message_id).first()
    if message is None or message.status != Message.Status.QUEUED:
        return Outcome.skipped("not queued")
    if message.next_attempt_at is not None and message.next_attempt_at > now + CLOCK_SKEW:
        return Outcome.skipped("not due, or being sent by another worker")
    if message.service_id is not None and number_opted_out(
        service_id=message.service_id, real_number=message.to_number
    ):
        return _fail(message, "Not sent: the recipient opted out (STOP).", reason=Message.Reason.RECIPIENT_OPTED_OUT)
    if MESSAGES.retry.exhausted(message.attempts):
        return _fail(message, f"Gave up after {message.attempts} attempts: {message.last_error}")

    # Claim the attempt: of two workers holding the same row, only one moves attempts on.
    claimed = (
        Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED, attempts=message.attempts)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + CLOCK_SKEW))
        .update(attempts=F("attempts") + 1, next_attempt_at=now + CLAIM_LEASE, updated_at=now)
    )
    if not claimed:
        return Outcome.skipped("claimed by another worker")
    attempt = message.attempts + 1

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
        sent = message_status_set(
            message,
            status=Message.Status.SENT,
            message_id=result.message_id,
            price=result.price,
            last_error="",
            next_attempt_at=None,
        )
        if not sent:
            # A delivery receipt (matched by client-ref) got here first; keep its status.
            Message.objects.filter(pk=message.pk, message_id="").update(message_id=result.message_id)
        logger.info("text %s sent to %s as %s", message.pk, mask(message.to_number), result.message_id)
        return Outcome.done(result.message_id)

    if permanent:
        return _fail(message, error)
    if MESSAGES.retry.exhausted(attempt):
        return _fail(message, f"Gave up after {attempt} attempts: {error}")
    delay = MESSAGES.retry.delay(attempt)
    Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
        last_error=truncate(error), next_attempt_at=timezone.now() + timedelta(seconds=delay), updated_at=timezone.now()
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
