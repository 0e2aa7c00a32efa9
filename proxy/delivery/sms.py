"""SMS delivery: send one queued outbox row through the provider, at most once per claim."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from proxy.delivery.validation import conversation_numbers_validate
from proxy.models import Notification, Participant
from proxy.notifications import SMS, client_ref_for
from proxy.outbox import Outcome, truncate
from proxy.phone import mask
from proxy.selectors import number_opted_out
from telephony.provider import ProviderError
from telephony.registry import get_provider

logger = logging.getLogger(__name__)


def _fail(notification: Notification, error: str, *, now: datetime) -> Outcome:
    Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
        status=Notification.Status.FAILED, last_error=truncate(error), updated_at=now
    )
    logger.info("SMS %s to %s failed: %s", notification.pk, mask(notification.to_number), error)
    return Outcome.failed(error)


def notification_send(*, notification_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at sending a queued SMS and record how it went.

    Temporary provider errors leave the row queued with ``last_error`` and ask for a
    retry (bounded by the kind's retry policy); permanent ones fail it. A row another worker is
    already sending, or that is no longer queued, is left alone.
    """
    now = now or timezone.now()
    notification = Notification.objects.select_related("participant__conversation").filter(pk=notification_id).first()
    if notification is None or notification.status != Notification.Status.QUEUED:
        return Outcome.skipped("not queued")
    participant = notification.participant
    if participant.validation == Participant.Validation.PENDING:
        # Validation normally runs first; when its task was lost, do it here.
        conversation_numbers_validate(conversation_id=participant.conversation_id, give_up=True)
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

    # Claim the attempt: of two workers holding the same row, only one moves attempts on.
    claimed = Notification.objects.filter(
        pk=notification.pk, status=Notification.Status.QUEUED, attempts=notification.attempts
    ).update(attempts=F("attempts") + 1, updated_at=now)
    if not claimed:
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
        updated = Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
            status=Notification.Status.SENT,
            message_id=result.message_id,
            price=result.price,
            last_error="",
            updated_at=timezone.now(),
        )
        if not updated:
            # A delivery receipt (matched by client-ref) got here first; keep its status.
            Notification.objects.filter(pk=notification.pk, message_id="").update(message_id=result.message_id)
        logger.info("SMS %s sent to %s as %s", notification.pk, mask(notification.to_number), result.message_id)
        return Outcome.done(result.message_id)

    if permanent:
        return _fail(notification, error, now=timezone.now())
    if SMS.retry.exhausted(attempt):
        return _fail(notification, f"Gave up after {attempt} attempts: {error}", now=timezone.now())
    Notification.objects.filter(pk=notification.pk, status=Notification.Status.QUEUED).update(
        last_error=truncate(error), updated_at=timezone.now()
    )
    delay = SMS.retry.delay(attempt)
    logger.info("SMS %s attempt %s failed (%s); retrying in %.0fs", notification.pk, attempt, error, delay)
    return Outcome.retry(delay, error)
