"""Number validation: look participants' numbers up with Number Insight and apply the answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.utils import timezone

from proxy.models import Conversation, Participant
from proxy.notifications import notifications_queue_for_conversation
from proxy.services import conversation_invalidate
from proxy.validation import (
    VALIDATIONS,
    conversation_has_invalid_number,
    participant_validation_record,
    participant_validation_unknown,
    participants_validation_postpone,
)
from telephony.provider import ProviderError
from virtual_numbers.insight import number_check_get


@dataclass(frozen=True)
class ValidationOutcome:
    """``retry`` when a temporary error left some number unchecked and the caller may retry."""

    valid: bool
    retry: bool = False
    error: str = ""
    found: bool = True
    claimed: bool = True


def conversation_numbers_validate(
    *, conversation_id: UUID | str, give_up: bool, now: datetime | None = None, retry_in: float | None = None
) -> ValidationOutcome:
    """Check every pending participant number of a conversation.

    An invalid number closes the conversation and fails its queued SMS. With ``give_up``,
    numbers that could not be checked become ``unknown``; otherwise they stay pending,
    due again in ``retry_in`` seconds (default: the kind's first backoff), and the outcome
    asks for a retry. The pending
    participants are claimed first: while another worker checks them, nothing is done
    (``claimed`` False).
    """
    now = now or timezone.now()
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return ValidationOutcome(valid=False, found=False)
    pending_ids = list(VALIDATIONS.waiting().filter(conversation_id=conversation.pk).values_list("pk", flat=True))
    if pending_ids and not VALIDATIONS.claim(conversation.pk, now=now):
        return ValidationOutcome(valid=True, claimed=False)
    pending = list(conversation.participants.filter(pk__in=pending_ids, validation=Participant.Validation.PENDING))
    errors = []
    invalid = False
    for participant in pending:
        try:
            check = number_check_get(number=participant.real_number)
        except ProviderError as exc:
            errors.append(str(exc))
            if give_up or exc.permanent:
                participant_validation_unknown(participant=participant)
            continue
        validation = participant_validation_record(
            participant=participant, valid=check.valid, number_type=check.number_type
        )
        invalid = invalid or validation == Participant.Validation.INVALID
    if invalid or conversation_has_invalid_number(conversation=conversation):
        conversation_invalidate(conversation=conversation)
        return ValidationOutcome(valid=False)
    if errors and not give_up:
        delay = VALIDATIONS.retry.delay(1) if retry_in is None else retry_in
        participants_validation_postpone(conversation_id=conversation.pk, until=now + timedelta(seconds=delay))
        return ValidationOutcome(valid=True, retry=True, error="; ".join(errors))
    return ValidationOutcome(valid=True)


def conversation_validate_then_notify(
    *, conversation_id: UUID | str, give_up: bool, retry_in: float | None = None
) -> ValidationOutcome:
    """Validate, then queue the conversation's SMS once its numbers are known good
    (none goes to an invalid number, and none before a retry has had its chance)."""
    outcome = conversation_numbers_validate(conversation_id=conversation_id, give_up=give_up, retry_in=retry_in)
    if outcome.found and outcome.claimed and outcome.valid and not outcome.retry:
        notifications_queue_for_conversation(conversation_id=conversation_id)
    return outcome
