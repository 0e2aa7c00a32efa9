"""Participant validation, writer side: what Number Insight said of each participant's number.

An invalid participant number closes its conversation (``services.conversation_invalidate``)
before any SMS goes out; a number Number Insight cannot check in time is marked
``unknown`` and the conversation goes ahead. The look-ups themselves run in a worker
(``proxy.delivery.validation``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from proxy.models import Conversation, Participant
from proxy.outbox import STALE_AFTER_SECONDS, OutboxKind, RetryPolicy, outbox_kind

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
    Participant.objects.filter(pk=participant.pk).update(validation=validation, number_type=number_type)
    return validation


def participant_validation_unknown(*, participant: Participant) -> None:
    """The number could not be checked and nobody will try again: go ahead without knowing."""
    Participant.objects.filter(pk=participant.pk).update(validation=Participant.Validation.UNKNOWN)


def conversation_has_invalid_number(*, conversation: Conversation) -> bool:
    return conversation.participants.filter(validation=Participant.Validation.INVALID).exists()


def _lost(now: datetime, limit: int) -> list[Any]:
    """Conversations with numbers still unchecked long after they opened: their task is gone."""
    stale = now - timedelta(seconds=STALE_AFTER_SECONDS)
    conversations = (
        Participant.objects.filter(validation=Participant.Validation.PENDING, active=True, created_at__lt=stale)
        .order_by()
        .values_list("conversation_id", flat=True)
        .distinct()
    )
    return [str(pk) for pk in conversations[:limit]]


VALIDATIONS = outbox_kind(
    OutboxKind(
        name="validations",
        task=VALIDATE_TASK,
        # Task retries (Number Insight temporarily down); after them, numbers go ahead as unknown.
        retry=RetryPolicy(base_seconds=5.0, cap_seconds=60.0, max_attempts=3),
        lost=_lost,
        # An SMS waits for its numbers to be checked: check them first.
        redrive_order=0,
    )
)
