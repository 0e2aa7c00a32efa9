"""Call control: hang up one leg of an ended conversation through the provider."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from proxy.hangups import HANGUPS, LONGEST_CALL
from proxy.models import CallHangup
from proxy.outbox import Outcome, truncate
from telephony.provider import ProviderError
from telephony.registry import get_provider

logger = logging.getLogger(__name__)


def call_hang_up(*, hangup_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at hanging up a pending leg and record how it went.

    The provider refusing for good (the leg already ended, Vonage's usual answer for the
    second leg of a call whose first was hung up) ends the row as ``not_in_progress``;
    temporary failures retry with backoff, a few times.
    """
    now = now or timezone.now()
    hangup = CallHangup.objects.select_related("call").filter(pk=hangup_id).first()
    if hangup is None or hangup.status != CallHangup.Status.PENDING:
        return Outcome.skipped("not pending")
    if hangup.next_attempt_at and hangup.next_attempt_at > now:
        return Outcome.skipped("not due, or being worked by another worker")
    if hangup.created_at < now - LONGEST_CALL or HANGUPS.retry.exhausted(hangup.attempts):
        return _finish(hangup, CallHangup.Status.FAILED, f"Gave up after {hangup.attempts} attempts")
    if not HANGUPS.claim(hangup.pk, now=now, attempts=F("attempts") + 1):
        return Outcome.skipped("claimed by another worker")
    attempt = hangup.attempts + 1
    try:
        get_provider().hangup_call(hangup.call.uuid)
    except ProviderError as exc:
        if exc.permanent:
            return _finish(hangup, CallHangup.Status.NOT_IN_PROGRESS, str(exc))
        if HANGUPS.retry.exhausted(attempt):
            return _finish(hangup, CallHangup.Status.FAILED, f"Gave up after {attempt} attempts: {exc}")
        delay = HANGUPS.retry.delay(attempt)
        CallHangup.objects.filter(pk=hangup.pk).update(
            last_error=truncate(str(exc)), next_attempt_at=timezone.now() + timedelta(seconds=delay)
        )
        return Outcome.retry(delay, str(exc))
    logger.info("hung up call %s: its conversation ended", hangup.call.uuid)
    return _finish(hangup, CallHangup.Status.DONE, "")


def _finish(hangup: CallHangup, status: str, error: str) -> Outcome:
    CallHangup.objects.filter(pk=hangup.pk).update(
        status=status, last_error=truncate(error), next_attempt_at=None, done_at=timezone.now()
    )
    if status == CallHangup.Status.FAILED:
        logger.warning("hang-up of call %s failed: %s", hangup.call.uuid, error)
        return Outcome.failed(error)
    return Outcome.done(status)
