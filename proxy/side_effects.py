"""Side effects of domain changes: the outbox rows a change writes and the work it queues.

Services call these inside their transactions. They write outbox rows (SMS, marketplace
callbacks, number checks) and queue their tasks by name with
``transaction.on_commit``, so a rolled-back change sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.callbacks import (
    DELIVER_TASK,
    FAN_OUT_TASK,
    callback_create_for_call,
    callback_create_for_conversation,
    callback_create_for_text_out_of_session,
    callback_create_for_transcript,
    callbacks_create_for_conversations,
)
from proxy.hangups import FAN_OUT_TASK as HANGUP_FAN_OUT_TASK
from proxy.hangups import HANGUP_TASK, hangups_create_for_conversations
from proxy.message_outbox import messages_wake_on_commit
from proxy.notifications import notifications_create_for_conversation
from proxy.outbox import queue_on_commit
from proxy.validation import VALIDATE_TASK

if TYPE_CHECKING:
    from proxy.models import Call, Conversation, Message, Notification, Participant, Service, Transcript

# Callback deliveries are queued in chunks: a sweep that ends 100,000 conversations
# must not publish 100,000 messages from inside its own transaction's commit.
_FANOUT_CHUNK = 500


def conversation_opened(
    conversation: Conversation, *, notify: bool, participants: list[Participant]
) -> list[Notification]:
    """A conversation was created: validate numbers, SMS participants when ``notify``, call back.

    ``participants``: the rows just written, with their ids. Returns the SMS rows it queued.
    """
    notifications = (
        notifications_create_for_conversation(conversation=conversation, participants=participants) if notify else []
    )
    delivery = callback_create_for_conversation(conversation=conversation, event="conversation.opened")
    # Validation queues the SMS once the numbers are known good, so none goes to an invalid one.
    queue_on_commit(VALIDATE_TASK, str(conversation.pk))
    if delivery is not None:
        queue_on_commit(DELIVER_TASK, delivery.pk)
    return notifications


def conversations_ended(conversation_ids: list, *, status: str) -> None:
    """Conversations were closed or expired (``status``): hang up their calls in progress
    (through the call-control outbox, after commit) and call back the marketplace."""
    if not conversation_ids:
        return
    hangups = hangups_create_for_conversations(conversation_ids=conversation_ids)
    if len(hangups) <= _FANOUT_CHUNK:
        for pk in hangups:
            queue_on_commit(HANGUP_TASK, pk)
    else:
        for start in range(0, len(hangups), _FANOUT_CHUNK):
            queue_on_commit(HANGUP_FAN_OUT_TASK, hangups[start : start + _FANOUT_CHUNK])
    event = "conversation.expired" if status == "expired" else "conversation.closed"
    ids = callbacks_create_for_conversations(conversation_ids=list(conversation_ids), event=event)
    for start in range(0, len(ids), _FANOUT_CHUNK):
        queue_on_commit(FAN_OUT_TASK, ids[start : start + _FANOUT_CHUNK])


def call_progressed(call: Call, *, event: str) -> None:
    """A leg of a conversation's call rang, was answered or completed (``event``, one of
    ``proxy.callbacks.CALL_EVENTS``): call back the marketplace."""
    delivery = callback_create_for_call(call=call, event=event)
    if delivery is not None:
        queue_on_commit(DELIVER_TASK, delivery.pk)


def transcript_stored(transcript: Transcript) -> None:
    """A recording's transcript is in storage: tell the marketplace (``recording.transcribed``)."""
    delivery = callback_create_for_transcript(transcript=transcript)
    if delivery is not None:
        queue_on_commit(DELIVER_TASK, delivery.pk)


def message_queued(message: Message) -> None:
    """A text waits to be sent (relayed, the service's own, an auto-reply): wake a sender after commit."""
    messages_wake_on_commit()


def text_out_of_session(message: Message, *, service: Service, last_held: Participant | None) -> None:
    """A text was kept out of session: tell the marketplace (``message.out_of_session``)."""
    delivery = callback_create_for_text_out_of_session(message=message, service=service, last_held=last_held)
    if delivery is not None:
        queue_on_commit(DELIVER_TASK, delivery.pk)
