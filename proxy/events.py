"""Domain events: what happens after a conversation or call changes.

The core calls these inside its transactions; they create outbox rows (SMS,
marketplace callbacks, downloads) and queue Celery tasks with
``transaction.on_commit``, so a rolled-back change sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.models import Call, Conversation, Recording


def on_conversation_opened(conversation: Conversation, *, notify: bool) -> None:
    """A conversation was created: validate numbers, SMS participants when ``notify``, call back."""


def on_conversations_ended(conversation_ids: list, *, status: str) -> None:
    """Conversations were closed or expired (``status``): call back the marketplace."""


def on_call_completed(call: Call) -> None:
    """A call reached ``completed``: call back the marketplace."""


def on_recording_announced(recording: Recording) -> None:
    """A record event announced a recording: download it."""
