"""Participant validation, writer side: what Number Insight said of each participant's number.

An invalid participant number closes its conversation (``services.conversation_invalidate``)
before any SMS goes out; a number Number Insight cannot check in time is marked
``unknown`` and the conversation goes ahead. The look-ups themselves run in a worker
(``proxy.delivery.validation``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from proxy.models import Conversation, Participant
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind

logger = logging.getLogger(__name__)

VALIDATE_TASK = "proxy.tasks.validate_conversation_numbers"


def participant_validation_record(*, participant: Participant, valid: bool | None, number_type: str = "") -> str:
    """Write down what Number Insight said of a participant's number; returns the validation."""
    if valid is False:
        validation = Participant.Validation.INVALID
    elif valid is True:
        validation = Participant.Validation.VALID
    else:
        validation = Participant.Validation.UNKNOWN
    Participant.objects.filter(pk=participant.pk).update(
        validation=validation, number_type=number_type, validation_due_at=None
    )
    return validation


def participant_validation_unknown(*, participant: Participant) -> None:
    """The number could not be checked and nobody will try again: go ahead without knowing."""
    Participant.objects.filter(pk=participant.pk).update(
        validation=Participant.Validation.UNKNOWN, validation_due_at=None
    )


def participants_validation_postpone(*, conversation_id: Any, until: datetime) -> None:
    """A look-up failed for now: the conversation's unchecked numbers are due again at ``until``."""
    _waiting().filter(conversation_id=conversation_id).update(validation_due_at=until)


def conversation_has_invalid_number(*, conversation: Conversation) -> bool:
    return conversation.participants.filter(validation=Participant.Validation.INVALID).exists()


def _waiting() -> QuerySet[Participant]:
    return Participant.objects.filter(validation=Participant.Validation.PENDING, active=True)


VALIDATIONS = outbox_kind(
    OutboxKind(
        name="validations",
        task=VALIDATE_TASK,
        # Task retries (Number Insight temporarily down); after them, numbers go ahead as unknown.
        retry=RetryPolicy(base_seconds=5.0, cap_seconds=60.0, max_attempts=3),
        # The rows are the participants still to be checked; the work is per conversation.
        waiting=_waiting,
        due_field="validation_due_at",
        task_arg="conversation_id",
        # An SMS waits for its numbers to be checked: check them first.
        redrive_order=0,
    )
)
