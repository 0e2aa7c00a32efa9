"""SMS delivery: send one queued outbox row through the provider, exactly once.

What is written around the send makes a worker's death safe:

1. before it, the claim: ``attempts`` + 1, ``sending_since`` = now and a lease
   (``next_attempt_at``), in one conditional update that only one worker can win;
2. after it, the result: ``sent`` with Vonage's message id, or the error and the retry's
   time, ``sending_since`` cleared either way.

A row found with ``sending_since`` still set had its worker die between the two, so
whether the provider accepted the message is unknown. It is never simply sent again:
the provider is asked by the message's client-ref (``notification-<id>``) when it can
tell (the sandbox can); otherwise the row waits for Vonage's delivery receipt, which
carries the same client-ref and settles it (``notification_receipt_apply``), and fails
after ``RECEIPT_WAIT`` without one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from proxy.delivery.validation import conversation_numbers_validate
from proxy.models import Notification, Participant
from proxy.notifications import SMS, client_ref_for
from proxy.outbox import Outcome, truncate
from proxy.phone import mask
from proxy.selectors import number_opted_out
from telephony.provider import ProviderError, SmsResult
from telephony.registry import get_provider

logger = logging.getLogger(__name__)

# How long a send in doubt waits for a delivery receipt when the provider cannot be asked.
RECEIPT_WAIT = timedelta(minutes=30)
# How often such a send is looked at again meanwhile (a receipt usually comes in seconds).
IN_DOUBT_RECHECK = timedelta(minutes=2)
# A participant's number being checked by another worker: look again this soon.
VALIDATION_WAIT_SECONDS = 15.0

_DONE = {"sending_since": None, "next_attempt_at": None}


def _fail(notification: Notification, error: str, *, now: datetime) -> Outcome:
    Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
        status=Notification.Status.FAILED, last_error=truncate(error), updated_at=now, **_DONE
    )
    logger.info("SMS %s to %s failed: %s", notification.pk, mask(notification.to_number), error)
    return Outcome.failed(error)


def _record_sent(notification: Notification, result: SmsResult) -> Outcome:
    updated = Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
        status=Notification.Status.SENT,
        message_id=result.message_id,
        price=result.price,
        last_error="",
        updated_at=timezone.now(),
        **_DONE,
    )
    if not updated:
        # A delivery receipt (matched by client-ref) got here first; keep its status.
        Notification.objects.filter(pk=notification.pk, message_id="").update(message_id=result.message_id)
    logger.info("SMS %s sent to %s as %s", notification.pk, mask(notification.to_number), result.message_id)
    return Outcome.done(result.message_id)


def _settle_in_doubt(notification: Notification, *, started: datetime, now: datetime) -> Outcome:
    """The row's last send began and never ended (its worker died): find out, never send twice."""
    if not SMS.claim(notification.pk, now=now):
        return Outcome.skipped("claimed by another worker")
    provider = get_provider()
    if provider.can_look_up_sms:
        try:
            result = provider.sms_sent_with_ref(client_ref_for(notification))
        except ProviderError as exc:
            Notification.objects.filter(pk=notification.pk).update(next_attempt_at=now + IN_DOUBT_RECHECK)
            return Outcome.skipped(f"in doubt; the provider could not say: {exc}")
        if result is not None:
            logger.info("SMS %s: its worker died after the provider accepted it; recorded, not resent", notification.pk)
            return _record_sent(notification, result)
        logger.info("SMS %s: its worker died before the provider accepted it; sending it now", notification.pk)
        Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(**_DONE)
        return notification_send(notification_id=notification.pk, now=now)
    if now - started >= RECEIPT_WAIT:
        return _fail(
            notification,
            "Not sent again: its worker stopped while Vonage was taking it, and no delivery receipt came "
            f"within {RECEIPT_WAIT.seconds // 60} minutes, so whether it went is unknown.",
            now=now,
        )
    Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
        next_attempt_at=min(now + IN_DOUBT_RECHECK, started + RECEIPT_WAIT)
    )
    return Outcome.skipped("in doubt: waiting for the delivery receipt")


def notification_send(*, notification_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at sending a queued SMS and record how it went.

    Temporary provider errors leave the row queued with ``last_error`` and its retry's
    time in ``next_attempt_at`` (bounded by the kind's retry policy); permanent ones
    fail it. A row another worker holds, not due yet, or no longer queued is left alone.
    """
    now = now or timezone.now()
    notification = Notification.objects.select_related("participant__conversation").filter(pk=notification_id).first()
    if notification is None or notification.status != Notification.Status.QUEUED:
        return Outcome.skipped("not queued")
    if notification.next_attempt_at is not None and notification.next_attempt_at > now:
        return Outcome.skipped("not due, or being sent by another worker")
    if notification.sending_since is not None:
        return _settle_in_doubt(notification, started=notification.sending_since, now=now)
    participant = notification.participant
    if participant.validation == Participant.Validation.PENDING:
        # Validation normally runs first; when its task was lost, do it here.
        checked = conversation_numbers_validate(conversation_id=participant.conversation_id, give_up=True, now=now)
        if not checked.claimed:
            return Outcome.retry(VALIDATION_WAIT_SECONDS, "the numbers are being checked by another worker")
        participant.refresh_from_db()
        notification.refresh_from_db()
        if notification.status != Notification.Status.QUEUED:
            return Outcome.skipped("not queued")
    if participant.validation == Participant.Validation.INVALID:
        return _fail(notification, "Not sent: the number is not valid.", now=now)
    # Loaded with the row, or read again after the validation above refreshed the participant.
    conversation = participant.conversation
    if not conversation.is_live:
        return _fail(notification, "Not sent: the conversation ended first.", now=now)
    if number_opted_out(service_id=notification.service_id, real_number=notification.to_number):
        return _fail(notification, "Not sent: the recipient opted out (STOP).", now=now)
    if SMS.retry.exhausted(notification.attempts):
        return _fail(
            notification, f"Gave up after {notification.attempts} attempts: {notification.last_error}", now=now
        )

    # Claim the attempt: of two workers holding the same row, only one moves attempts on,
    # and from here until the result is written the send is "in doubt" (sending_since).
    if not SMS.claim(notification.pk, now=now, attempts=F("attempts") + 1, sending_since=now, updated_at=now):
        return Outcome.skipped("claimed by another worker")
    attempt = notification.attempts + 1

    try:
        result = get_provider().send_sms(
            from_number=notification.from_number,
            to_number=notification.to_number,
            text=notification.text,
            client_ref=client_ref_for(notification),
            callback_url=f"{settings.PUBLIC_URL}/webhooks/sms/status",
        )
    except ProviderError as exc:
        error, permanent = str(exc), exc.permanent
    except Exception as exc:
        # An unexpected error must still leave the row in a known, retryable state.
        logger.exception("SMS %s: unexpected error from the provider", notification.pk)
        error, permanent = f"{type(exc).__name__}: {exc}", False
    else:
        return _record_sent(notification, result)

    if permanent:
        return _fail(notification, error, now=timezone.now())
    if SMS.retry.exhausted(attempt):
        return _fail(notification, f"Gave up after {attempt} attempts: {error}", now=timezone.now())
    delay = SMS.retry.delay(attempt)
    later = timezone.now()
    Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
        last_error=truncate(error),
        updated_at=later,
        sending_since=None,
        next_attempt_at=later + timedelta(seconds=delay),
    )
    logger.info("SMS %s attempt %s failed (%s); retrying in %.0fs", notification.pk, attempt, error, delay)
    return Outcome.retry(delay, error)
