"""Number validation with Number Insight, cached a day per number.

An invalid participant number closes its conversation (reason ``invalid_number``) before
any SMS goes to it; a number Number Insight cannot check in time is marked ``unknown``
and the conversation goes ahead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from proxy.models import Conversation, Notification, Participant
from proxy.outbox import truncate
from proxy.phone import mask
from telephony.provider import ProviderError
from telephony.registry import get_provider
from virtual_numbers.models import NumberCheck

logger = logging.getLogger(__name__)

CACHE_TTL = timedelta(days=1)
INVALID_REASON = "invalid_number"


@dataclass(frozen=True)
class ValidationOutcome:
    """``retry`` when a temporary error left some number unchecked and the caller may retry."""

    valid: bool
    retry: bool = False
    error: str = ""
    found: bool = True


def number_check_get(*, number: str, now: datetime | None = None) -> NumberCheck:
    """What Number Insight says about ``number``, from the cache when checked within a day.

    Raises ProviderError when the look-up fails.
    """
    now = now or timezone.now()
    cached = NumberCheck.objects.filter(number=number, checked_at__gte=now - CACHE_TTL).first()
    if cached is not None:
        return cached
    result = get_provider().number_insight(number, level=settings.NUMBER_INSIGHT_LEVEL)
    values = {
        "valid": result.valid,
        "country": (result.country or "")[:2],
        "number_type": (result.number_type or "")[:30],
        "carrier": (result.carrier or "")[:100],
        "ported": result.ported,
        "raw": result.raw,
        "checked_at": now,
    }
    try:
        with transaction.atomic():
            check, _ = NumberCheck.objects.update_or_create(number=number, defaults=values)
    except IntegrityError:
        # Another worker checked the same number at the same moment; theirs is as good.
        check = NumberCheck.objects.get(number=number)
    logger.info("number %s checked: valid=%s type=%s", mask(number), result.valid, result.number_type)
    return check


def conversation_numbers_validate(*, conversation_id: UUID | str, give_up: bool) -> ValidationOutcome:
    """Check every pending participant number of a conversation.

    An invalid number closes the conversation and fails its queued SMS. With ``give_up``,
    numbers that could not be checked become ``unknown``; otherwise they stay pending and
    the outcome asks for a retry.
    """
    from proxy.services import conversation_close

    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return ValidationOutcome(valid=False, found=False)
    pending = list(conversation.participants.filter(validation=Participant.Validation.PENDING))
    errors = []
    invalid = False
    for participant in pending:
        try:
            check = number_check_get(number=participant.real_number)
        except ProviderError as exc:
            errors.append(str(exc))
            if give_up or exc.permanent:
                Participant.objects.filter(pk=participant.pk).update(validation=Participant.Validation.UNKNOWN)
            continue
        if check.valid is False:
            validation = Participant.Validation.INVALID
            invalid = True
        elif check.valid is True:
            validation = Participant.Validation.VALID
        else:
            validation = Participant.Validation.UNKNOWN
        Participant.objects.filter(pk=participant.pk).update(validation=validation, number_type=check.number_type)
    if not invalid:
        invalid = conversation.participants.filter(validation=Participant.Validation.INVALID).exists()
    if invalid:
        with transaction.atomic():
            conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
            if conversation.status == Conversation.Status.OPEN:
                conversation_close(conversation=conversation, reason=INVALID_REASON)
            queued = Notification.objects.filter(
                participant__conversation_id=conversation.pk, status=Notification.Status.QUEUED
            )
            invalid_here = Q(participant__validation=Participant.Validation.INVALID)
            queued.filter(invalid_here).update(
                status=Notification.Status.FAILED,
                last_error="Not sent: the number is not valid.",
                updated_at=timezone.now(),
            )
            queued.exclude(invalid_here).update(
                status=Notification.Status.FAILED,
                last_error=truncate("Not sent: the other participant's number is not valid."),
                updated_at=timezone.now(),
            )
        logger.info("conversation %s closed: a participant number is invalid", conversation.pk)
        return ValidationOutcome(valid=False)
    if errors and not give_up:
        return ValidationOutcome(valid=True, retry=True, error="; ".join(errors))
    return ValidationOutcome(valid=True)


def number_checks_prune(*, now: datetime | None = None, keep: timedelta = timedelta(days=30)) -> int:
    """Forget look-ups older than ``keep``: they are personal data and long stale."""
    now = now or timezone.now()
    deleted, _ = NumberCheck.objects.filter(checked_at__lt=now - keep).delete()
    return deleted
