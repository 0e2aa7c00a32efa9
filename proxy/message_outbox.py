"""The message outbox, writer side: texts waiting to be sent, their receipts and retries.

A ``Message`` that carries an SMS on (a relay, the service's own text, an auto-reply) is
written ``queued`` in the transaction that accepted it, with ``next_attempt_at`` = due
now, and wakes a sender after commit; a worker (``proxy.delivery.messages``) sends it
with the row locked from read to record, so two workers never both send it. Delivery
receipts and staff retries are applied here, and each change of a listed text's status
is reported to the marketplace (``message.status``).

Concatenated inbound texts wait in ``MessagePart`` rows for their other parts; the
``message-parts`` kind makes sure a group whose timer task was lost is still joined
once its wait is over.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, QuerySet
from django.utils import timezone

from config.redis_guard import REDIS
from proxy.callbacks import DELIVER_TASK, callback_create_for_message
from proxy.models import Message, MessagePart
from proxy.notifications import RECEIPT_STATUS
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind, queue_now, queue_on_commit, receipt_row, truncate
from telephony.values import vonage_decimal

logger = logging.getLogger(__name__)

SEND_TASK = "proxy.tasks.send_message"
DRAIN_TASK = "proxy.tasks.send_messages"
ASSEMBLE_TASK = "proxy.tasks.assemble_message"
CLIENT_REF_PREFIX = "message-"
# Texts the API lists, and so reports to the marketplace as their status changes.
LISTED_KINDS = (Message.Kind.RELAY, Message.Kind.PLATFORM)
FINAL = (Message.Status.DELIVERED, Message.Status.FAILED)


def client_ref_for(message: Message) -> str:
    return f"{CLIENT_REF_PREFIX}{message.pk}"


# --- Waking the senders -----------------------------------------------------------------------
#
# One Celery task per text would cost more than sending the text (the broker's round
# trips and the worker's bookkeeping, several milliseconds a task). So fresh texts wake a
# drain (``DRAIN_TASK``), which sends every due text, one transaction each, until none is
# due; while a wake-up waits in the broker, more texts add nothing to it. A drain takes
# the wake-up flag down before it looks, so a text committed after that look raises it
# again and wakes the next drain: none waits for the redrive. Retries, staff retries
# and the redrive still queue one task per text (``SEND_TASK``).
_WAKE_TTL = 10


def _wake_key() -> str:
    # Per database: deployments (and parallel test runs) sharing one Redis stay apart.
    return f"proxy:messages-wake:{connection.settings_dict['NAME']}"


@functools.cache
def _redis(url: str) -> Any:
    """A client kept for the process: Django's cache builds a new one on every call, which
    cost more than the round trip on the inbound webhook's path. Short timeouts: Redis
    stays off the critical path."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def _flag_raise() -> bool:
    if settings.REDIS_URL:
        return bool(_redis(settings.REDIS_URL).set(_wake_key(), 1, nx=True, ex=_WAKE_TTL))
    return cache.add(_wake_key(), 1, timeout=_WAKE_TTL)


def _flag_lower() -> None:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).delete(_wake_key())
    else:
        cache.delete(_wake_key())


def messages_wake() -> None:
    """Make sure a drain will run that sees what is committed now (at most one wake-up waits)."""
    # Redis known to be down (the breaker the rate limit and task queuing share): not even
    # tried, so no inbound webhook waits for its timeouts. The rows are safe; the redrive sends.
    if not REDIS.allows():
        return
    try:
        wanted = _flag_raise()
    except Exception as exc:
        # Redis is down, so the broker is too: publishing would only hold the webhook for
        # its timeouts. The texts are safe in their rows; the redrive sends them.
        REDIS.failed(exc)
        logger.warning("Redis unreachable: no drain woken; the outbox redrive will send the texts")
        return
    REDIS.succeeded()
    if wanted:
        try:
            queue_now(DRAIN_TASK)
        except Exception:
            logger.exception("could not queue %s; the outbox redrive will send the texts", DRAIN_TASK)


def messages_wake_on_commit() -> None:
    """Wake a drain once the current transaction commits (at once outside one)."""
    transaction.on_commit(messages_wake, robust=True)


def messages_wake_taken() -> None:
    """A drain starts: the next text must wake another one."""
    try:
        _flag_lower()
    except Exception:
        logger.warning("the cache could not forget the wake-up; it expires by itself")


def message_reported(message: Message, *, event: str) -> None:
    """Tell the marketplace about a listed text (when the service has a callback URL)."""
    # The service first: without a callback URL nothing more is read.
    if message.kind not in LISTED_KINDS or message.service is None or not message.service.callback_url:
        return
    conversation = message.conversation if message.conversation_id else None
    delivery = callback_create_for_message(message=message, event=event, conversation=conversation)
    if delivery is not None:
        queue_on_commit(DELIVER_TASK, delivery.pk)


def message_status_set(message: Message, *, status: str, **changes: Any) -> bool:
    """Move a text from the status it has in hand to ``status`` (with ``changes``), and report it.

    False when another process moved it first: nothing is written then.
    """
    updated = Message.objects.filter(pk=message.pk, status=message.status).update(
        status=status, updated_at=timezone.now(), **changes
    )
    if not updated:
        return False
    message.status = status
    for field, value in changes.items():
        setattr(message, field, value)
    if status != Message.Status.QUEUED:
        message_reported(message, event="message.status")
    return True


# --- Delivery receipts ------------------------------------------------------------------------


def _receipt_target(params: dict[str, str]) -> Message | None:
    # Locked: a receipt that overtakes the worker recording its send waits for that record.
    return receipt_row(Message.objects.select_for_update(), params, client_ref_prefix=CLIENT_REF_PREFIX)


def message_receipt_apply(*, params: dict[str, str]) -> Message | None:
    """Apply a Vonage delivery receipt to the text it is about; None when it matches none.
    Call it in a transaction (the row is locked until it ends).

    Status only moves forward (queued → sent → delivered | failed): a repeated or late
    receipt changes nothing.
    """
    message = _receipt_target(params)
    if message is None:
        return None
    receipt = (params.get("status") or "").lower()
    new_status = RECEIPT_STATUS.get(receipt)
    if new_status is None or message.status in FINAL or message.status == new_status:
        return message
    if message.status not in (Message.Status.QUEUED, Message.Status.SENT):
        return message  # held or kept: nothing was sent for this row
    changes: dict[str, Any] = {}
    message_id = params.get("messageId") or params.get("message-id") or ""
    if message_id and not message.message_id:
        changes["message_id"] = message_id
    price = vonage_decimal(params.get("price"), max_digits=14, places=8)
    if price is not None:
        changes["price"] = price
    if new_status == Message.Status.FAILED:
        changes["last_error"] = truncate(f"Delivery receipt: {receipt} (err-code {params.get('err-code', '?')})")
    if message.status == Message.Status.QUEUED:
        changes["next_attempt_at"] = None
    message_status_set(message, status=new_status, **changes)
    return message


# --- Staff ------------------------------------------------------------------------------------


def message_retry(*, message: Message) -> bool:
    """Staff: send a failed or held text again, from scratch, while its conversation is live.

    A held text is relayed after all (staff overrule the cap); a text that was never meant
    to be sent (kept out of session, a keyword) is left alone.
    """
    if message.kind == Message.Kind.INBOUND or message.status not in (Message.Status.FAILED, Message.Status.HELD):
        return False
    if message.redacted or (message.conversation_id is not None and not message.conversation.is_live):  # type: ignore[union-attr]
        return False
    if message.conversation_id is None and message.kind != Message.Kind.AUTO_REPLY:
        return False
    now = timezone.now()
    updated = Message.objects.filter(pk=message.pk, status=message.status).update(
        status=Message.Status.QUEUED, attempts=0, last_error="", next_attempt_at=now, updated_at=now
    )
    if updated:
        queue_on_commit(SEND_TASK, message.pk)
    return bool(updated)


# --- The outbox kinds ------------------------------------------------------------------------


def _queued() -> QuerySet[Message]:
    # Every queued text carries its due time (``next_attempt_at``: set when it is written,
    # moved on by a drain's lock and by a failed attempt's retry).
    return Message.objects.filter(status=Message.Status.QUEUED)


MESSAGES = outbox_kind(
    OutboxKind(
        name="messages",
        task=SEND_TASK,
        retry=RetryPolicy(base_seconds=10.0, cap_seconds=600.0, max_attempts=8),
        waiting=_queued,
    )
)


def parts_wait() -> timedelta:
    """How long the parts of a concatenated text are waited for (``MESSAGE_PARTS_WAIT_SECONDS``)."""
    return timedelta(seconds=max(settings.MESSAGE_PARTS_WAIT_SECONDS, 0))


def _parts_waiting() -> QuerySet[MessagePart]:
    # A part is due when its wait for the others is over (its timer task joins it then).
    return MessagePart.objects.annotate(due_at=ExpressionWrapper(F("received_at") + parts_wait(), DateTimeField()))


MESSAGE_PARTS = outbox_kind(
    OutboxKind(
        name="message-parts",
        task=ASSEMBLE_TASK,
        retry=RetryPolicy(base_seconds=10.0, cap_seconds=60.0),
        waiting=_parts_waiting,
        due_field="due_at",
        created_field="received_at",
        # Parts belong to no service yet: they are matched to a conversation when joined.
        service_field="to_number",
        # Joining a text queues its relay: join first.
        redrive_order=50,
    )
)
