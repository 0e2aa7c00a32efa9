"""Domain events: what happens after a conversation or call changes.

The core calls these inside its transactions; they create outbox rows (SMS,
marketplace callbacks, downloads) and queue Celery tasks with
``transaction.on_commit``, so a rolled-back change sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.outbox import enqueue_on_commit

if TYPE_CHECKING:
    from proxy.models import Call, Conversation, Notification, Participant, Recording

# Callback deliveries are queued in chunks: a sweep that ends 100,000 conversations
# must not publish 100,000 messages from inside its own transaction's commit.
_FANOUT_CHUNK = 500


def on_conversation_opened(
    conversation: Conversation, *, notify: bool, participants: list[Participant]
) -> list[Notification]:
    """A conversation was created: validate numbers, SMS participants when ``notify``, call back.

    ``participants``: the rows just written, with their ids. Returns the SMS rows it queued.
    """
    from proxy import tasks
    from proxy.callbacks import callback_create_for_conversation
    from proxy.notifications import notifications_create_for_conversation
    from virtual_numbers import tasks as number_tasks

    notifications = (
        notifications_create_for_conversation(conversation=conversation, participants=participants) if notify else []
    )
    delivery = callback_create_for_conversation(conversation=conversation, event="conversation.opened")
    # Validation queues the SMS once the numbers are known good, so none goes to an invalid one.
    enqueue_on_commit(number_tasks.validate_conversation_numbers, str(conversation.pk))
    if delivery is not None:
        enqueue_on_commit(tasks.deliver_callback, delivery.pk)
    return notifications


def on_conversations_ended(conversation_ids: list, *, status: str) -> None:
    """Conversations were closed or expired (``status``): call back the marketplace."""
    from proxy import tasks
    from proxy.callbacks import callbacks_create_for_conversations

    if not conversation_ids:
        return
    event = "conversation.expired" if status == "expired" else "conversation.closed"
    ids = callbacks_create_for_conversations(conversation_ids=list(conversation_ids), event=event)
    for start in range(0, len(ids), _FANOUT_CHUNK):
        enqueue_on_commit(tasks.deliver_callbacks, ids[start : start + _FANOUT_CHUNK])


def on_call_completed(call: Call) -> None:
    """A call reached ``completed``: call back the marketplace."""
    from proxy import tasks
    from proxy.callbacks import callback_create_for_call

    delivery = callback_create_for_call(call=call)
    if delivery is not None:
        enqueue_on_commit(tasks.deliver_callback, delivery.pk)


def on_recording_announced(recording: Recording) -> None:
    """A record event announced a recording: download it."""
    from proxy import tasks

    enqueue_on_commit(tasks.download_recording, recording.pk)
