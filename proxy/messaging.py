"""Masked messages: what becomes of a text someone sends a proxy number, and the service's own texts.

A text from a participant of an open conversation to their proxy number is relayed to
the other participant from that participant's proxy number, so a reply comes back the
same way. It is written once (the webhook keeps each Vonage ``messageId`` once, in the
same transaction) as a queued ``Message``, and a worker sends it
(``proxy.delivery.messages``). Everything else is kept for audit and not relayed:
out-of-session texts (reported with ``message.out_of_session``, answered at most once a
day per sender when the service has an auto-reply), STOP/START keywords (which opt the
sender out of, or back into, every SMS from the service), texts over the abuse caps
(held, ``message.held``), and input no SMS could carry.

Texts are personal data: never logged, and ``messages_redact`` removes them (with the
real numbers beside them) once the retention job says so.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from proxy import side_effects
from proxy.errors import ConversationEnded, InvalidInput
from proxy.message_outbox import message_reported
from proxy.models import (
    CallEvent,
    Conversation,
    Message,
    MessageContact,
    MessageCounter,
    Participant,
    Service,
    insert_row,
)
from proxy.phone import mask, valid_digits
from proxy.retention import PersonalData, personal_data
from proxy.selectors import TextRoute, conversation_last_held, number_opted_out, route_for_text
from webhooks.payloads import REDACTED_PAYLOAD, inbound_sms_event_keys

logger = logging.getLogger(__name__)

# What one text may hold: ten concatenated parts' worth. Longer is kept, not relayed.
MAX_TEXT = 1600
STOP_WORDS = frozenset({"STOP", "UNSUBSCRIBE"})
START_WORDS = frozenset({"START"})
# The caps' windows: a sliding hour per conversation, fixed minutes per service.
CONVERSATION_WINDOW = timedelta(hours=1)
SERVICE_WINDOW_SECONDS = 60
COUNTER_SHARDS = 8
AUTO_REPLY_EVERY = timedelta(days=1)


@dataclass(frozen=True)
class InboundText:
    """A text as it reached a pool number, parts already joined.

    ``sender``/``to``: E.164 digits, or None when missing or not a number (``*_raw`` keep
    what was sent, for audit). ``text``: None when there was none (a binary message).
    ``ids``: Vonage's message ids, one per part. ``parts_expected``: how many parts the
    message said it had (more than ``len(ids)`` when some never came).
    """

    sender: str | None
    to: str | None
    text: str | None
    encoding: str = "text"
    ids: tuple[str, ...] = ()
    sender_raw: str = ""
    to_raw: str = ""
    parts_expected: int = 1
    received_at: datetime = field(default_factory=timezone.now)


def keyword_of(text: str | None) -> Literal["stop", "start"] | None:
    """STOP / UNSUBSCRIBE or START as the whole text, any case, surrounding spaces and dots aside."""
    if not text or len(text) > 20:
        return None
    word = text.strip().strip(".!").strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None


def _content_problem(inbound: InboundText) -> str:
    if inbound.encoding == "binary":
        return Message.Reason.BINARY
    if not inbound.text:
        return Message.Reason.NO_TEXT
    if len(inbound.text) > MAX_TEXT:
        return Message.Reason.TOO_LONG
    return Message.Reason.NONE


_PROBLEM_TEXT: dict[str, str] = {
    Message.Reason.BINARY: "Not relayed: a binary message.",
    Message.Reason.NO_TEXT: "Not relayed: no text.",
    Message.Reason.TOO_LONG: f"Not relayed: longer than {MAX_TEXT} characters.",
    Message.Reason.RECIPIENT_OPTED_OUT: "Not sent: the recipient opted out (STOP).",
    Message.Reason.CONVERSATION_LIMIT: "Held: over the conversation's message cap.",
    Message.Reason.SERVICE_LIMIT: "Held: over the service's message cap.",
}


def text_receive(*, inbound: InboundText) -> Message:
    """Decide what becomes of a text to a pool number, in the caller's transaction.

    Called once per Vonage message (the webhook's duplicate check guarantees it). Never
    raises for bad input: whatever arrived is kept as a ``Message``. Returns it.
    """
    now = inbound.received_at
    route = route_for_text(
        sender=inbound.sender, proxy_number=inbound.to, relays_since=now - CONVERSATION_WINDOW, now=now
    )
    service = route.service
    text = (inbound.text or "")[:MAX_TEXT]
    kept = Message(
        kind=Message.Kind.INBOUND,
        status=Message.Status.RECEIVED,
        service=service,
        from_number=inbound.sender or inbound.sender_raw,
        to_number=inbound.to or inbound.to_raw,
        text=text,
        encoding=inbound.encoding,
        inbound_ids=list(inbound.ids),
        parts=max(len(inbound.ids), 1),
        created_at=now,
    )
    if service is None:
        kept.reason = Message.Reason.UNKNOWN_NUMBER
        kept.save()
        logger.info("text %s to a number outside every pool (%s)", kept.pk, mask(inbound.to or inbound.to_raw))
        return kept
    keyword = keyword_of(inbound.text) if inbound.sender and inbound.encoding != "binary" else None
    if keyword is not None:
        return _keyword_receive(kept, keyword=keyword, route=route, service=service, now=now)
    if route.sender is None:
        return _out_of_session_receive(kept, inbound=inbound, service=service, now=now)
    message = _relay_receive(inbound, route=route, service=service, text=text, now=now)
    if len(inbound.ids) < inbound.parts_expected:
        logger.info("text %s joined from %s of %s parts", message.pk, len(inbound.ids), inbound.parts_expected)
    return message


def _relay_receive(inbound: InboundText, *, route: TextRoute, service: Service, text: str, now: datetime) -> Message:
    sender, recipient, conversation = route.sender, route.recipient, route.conversation
    assert sender is not None and recipient is not None and conversation is not None
    message = Message(
        kind=Message.Kind.RELAY,
        service=service,
        conversation=conversation,
        from_participant=sender,
        to_participant=recipient,
        from_number=recipient.proxy_number_id,
        to_number=recipient.real_number,
        text=text,
        encoding=inbound.encoding,
        inbound_ids=list(inbound.ids),
        parts=max(len(inbound.ids), 1),
        next_attempt_at=now,
        created_at=now,
    )
    problem = _content_problem(inbound)
    if problem:
        _refuse(message, status=Message.Status.FAILED, reason=problem)
    elif service.message_limit_conversation and route.recent_relays >= service.message_limit_conversation:
        _refuse(message, status=Message.Status.HELD, reason=Message.Reason.CONVERSATION_LIMIT)
    elif route.recipient_opted_out:
        _refuse(message, status=Message.Status.FAILED, reason=Message.Reason.RECIPIENT_OPTED_OUT)
    # Written without the ORM's INSERT compilation: this is the inbound webhook's hot path.
    insert_row(message)
    # Counted last, so the counter row is locked only until the commit that follows.
    limit = service.message_limit_service
    if message.status == Message.Status.QUEUED and limit and _service_count_bump(service=service, now=now) > limit:
        _refuse(message, status=Message.Status.HELD, reason=Message.Reason.SERVICE_LIMIT)
        Message.objects.filter(pk=message.pk).update(
            status=message.status, reason=message.reason, last_error=message.last_error, next_attempt_at=None
        )
    if message.status == Message.Status.QUEUED:
        side_effects.message_queued(message)
    message_reported(message, event="message.held" if message.status == Message.Status.HELD else "message.received")
    logger.info(
        "text %s in conversation %s from participant %s: %s%s",
        message.pk,
        conversation.pk,
        sender.pk,
        message.status,
        f" ({message.reason})" if message.reason else "",
    )
    return message


def _refuse(message: Message, *, status: str, reason: str) -> None:
    message.status = status
    message.reason = reason
    message.last_error = _PROBLEM_TEXT.get(reason, "")
    message.next_attempt_at = None


def _keyword_receive(kept: Message, *, keyword: str, route: TextRoute, service: Service, now: datetime) -> Message:
    assert kept.from_number
    if keyword == "stop":
        kept.reason = Message.Reason.OPT_OUT
        number_opt_out(service=service, real_number=kept.from_number, now=now)
    else:
        kept.reason = Message.Reason.OPT_IN
        number_opt_in(service=service, real_number=kept.from_number, now=now)
    kept.conversation = route.conversation
    kept.from_participant = route.sender
    kept.save()
    logger.info("text %s: %s from %s for service %s", kept.pk, kept.reason, mask(kept.from_number), service.slug)
    return kept


def _out_of_session_receive(kept: Message, *, inbound: InboundText, service: Service, now: datetime) -> Message:
    sender = valid_digits(inbound.sender)
    kept.reason = Message.Reason.OUT_OF_SESSION if sender else Message.Reason.BAD_SENDER
    kept.save()
    last_held = (
        conversation_last_held(service=service, real_number=sender, proxy_number=kept.to_number) if sender else None
    )
    side_effects.text_out_of_session(kept, service=service, last_held=last_held)
    replied = False
    if sender and service.auto_reply_text and _auto_reply_due(service=service, real_number=sender, now=now):
        reply = Message.objects.create(
            kind=Message.Kind.AUTO_REPLY,
            service=service,
            from_number=kept.to_number,
            to_number=sender,
            text=service.auto_reply_text,
            next_attempt_at=now,
            created_at=now,
        )
        side_effects.message_queued(reply)
        replied = True
    logger.info(
        "text %s out of session from %s to %s%s",
        kept.pk,
        mask(kept.from_number),
        mask(kept.to_number),
        "; auto-reply queued" if replied else "",
    )
    return kept


def _contact_ensure(*, service: Service, real_number: str) -> None:
    contact = MessageContact(service=service, real_number=real_number)
    MessageContact.objects.bulk_create([contact], ignore_conflicts=True)


def _auto_reply_due(*, service: Service, real_number: str, now: datetime) -> bool:
    """Claim today's auto-reply to this sender: True for the first claim in a day, once,
    even when two texts race (a conditional update on one row)."""
    _contact_ensure(service=service, real_number=real_number)
    claimed = (
        MessageContact.objects.filter(service=service, real_number=real_number, opted_out=False)
        .filter(Q(auto_replied_at__isnull=True) | Q(auto_replied_at__lte=now - AUTO_REPLY_EVERY))
        .update(auto_replied_at=now)
    )
    return bool(claimed)


_BUMP_SQL = """
INSERT INTO proxy_messagecounter (service_id, window_start, shard, count) VALUES (%s, %s, %s, 1)
ON CONFLICT (service_id, window_start, shard) DO UPDATE SET count = proxy_messagecounter.count + 1
RETURNING count
"""
_OTHERS_SQL = """
SELECT COALESCE(SUM(count), 0) FROM proxy_messagecounter WHERE service_id = %s AND window_start = %s AND shard <> %s
"""
# PostgreSQL: both in one round trip. The outer read does not see the bump (one
# snapshot), hence "the other shards" plus the bumped one.
_BUMP_AND_COUNT_SQL = f"WITH bumped AS ({_BUMP_SQL}) SELECT (SELECT count FROM bumped), ({_OTHERS_SQL})"  # noqa: S608


def _service_count_bump(*, service: Service, now: datetime) -> int:
    """Count one more relay in the service's current minute; how many there are now.

    One of a few shard rows is bumped, so concurrent relays rarely wait on one lock;
    the others are read as committed. Under concurrency the cap can be passed by the
    number of relays in flight at once, which an abuse cap can live with.
    """
    epoch = int(now.timestamp())
    window = datetime.fromtimestamp(epoch - epoch % SERVICE_WINDOW_SECONDS, tz=now.tzinfo)
    at = connection.ops.adapt_datetimefield_value(window)
    shard = random.randrange(COUNTER_SHARDS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_BUMP_AND_COUNT_SQL, [service.pk, at, shard, service.pk, at, shard])
            mine, others = cursor.fetchone()
        else:
            cursor.execute(_BUMP_SQL, [service.pk, at, shard])
            mine = cursor.fetchone()[0]
            cursor.execute(_OTHERS_SQL, [service.pk, at, shard])
            others = cursor.fetchone()[0]
    if mine == 1:
        # This shard's first relay of a new minute: the service's older minutes are done with.
        MessageCounter.objects.filter(service=service, window_start__lt=window).delete()
    return int(mine) + int(others)


# --- Opt-out ----------------------------------------------------------------------------------


def number_opt_out(*, service: Service, real_number: str, now: datetime | None = None) -> bool:
    """``real_number`` texted STOP: no SMS from the service reaches it until START. True when it changed."""
    now = now or timezone.now()
    _contact_ensure(service=service, real_number=real_number)
    return bool(
        MessageContact.objects.filter(service=service, real_number=real_number, opted_out=False).update(
            opted_out=True, opted_out_at=now, updated_at=now
        )
    )


def number_opt_in(*, service: Service, real_number: str, now: datetime | None = None) -> bool:
    """``real_number`` texted START: the service's SMS reach it again. True when it changed."""
    now = now or timezone.now()
    return bool(
        MessageContact.objects.filter(service=service, real_number=real_number, opted_out=True).update(
            opted_out=False, opted_in_at=now, updated_at=now
        )
    )


# --- The service's own texts ---------------------------------------------------------------


def message_send_for_service(*, conversation: Conversation, to_participant: Any, text: str) -> Message:
    """Queue the service's own ``text`` to a participant, from that participant's proxy number.

    Raises InvalidInput (``to_participant`` not in this conversation, or a text no SMS
    can carry) and ConversationEnded (not open). A participant who opted out gets
    nothing: the message is written failed.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(text, str) or not text.strip():
        errors["text"] = ["Give the text to send."]
    elif len(text) > MAX_TEXT:
        errors["text"] = [f"At most {MAX_TEXT} characters ({len(text)} given)."]
    elif "\x00" in text:
        errors["text"] = ["Null characters are not allowed."]
    recipient = None
    if isinstance(to_participant, uuid.UUID):
        recipient = Participant.objects.filter(public_id=to_participant, conversation_id=conversation.pk).first()
    if recipient is None:
        errors["to_participant"] = ["Not a participant of this conversation."]
    if errors:
        raise InvalidInput(errors)
    assert recipient is not None
    now = timezone.now()
    with transaction.atomic():
        # Locked against a concurrent close: a text is queued only while the conversation is open.
        locked = Conversation.objects.select_for_update().select_related("service").get(pk=conversation.pk)
        if not locked.is_live:
            raise ConversationEnded()
        message = Message(
            kind=Message.Kind.PLATFORM,
            service=locked.service,
            conversation=locked,
            to_participant=recipient,
            from_number=recipient.proxy_number_id,
            to_number=recipient.real_number,
            text=text,
            next_attempt_at=now,
            created_at=now,
        )
        if number_opted_out(service_id=locked.service_id, real_number=recipient.real_number):
            _refuse(message, status=Message.Status.FAILED, reason=Message.Reason.RECIPIENT_OPTED_OUT)
        message.save()
        if message.status == Message.Status.QUEUED:
            side_effects.message_queued(message)
        else:
            message_reported(message, event="message.status")
    logger.info(
        "text %s from service %s to participant %s: %s", message.pk, locked.service.slug, recipient.pk, message.status
    )
    return message


# --- Retention --------------------------------------------------------------------------------


def _redact(rows: Any) -> int:
    """Blank the texts and the real numbers of ``rows`` (and their raw inbound events)."""
    found = list(rows.filter(redacted=False).values_list("pk", "inbound_ids"))
    ids = [pk for pk, _ in found]
    vonage_ids = [vonage_id for _, batch in found for vonage_id in batch]
    count = Message.objects.filter(pk__in=ids, redacted=False).update(
        text="",
        # Inbound rows came from a person's number; the others go to one. Pool numbers stay.
        from_number=Case(When(kind=Message.Kind.INBOUND, then=Value("")), default=F("from_number")),
        to_number=Case(When(kind=Message.Kind.INBOUND, then=F("to_number")), default=Value("")),
        redacted=True,
        updated_at=timezone.now(),
    )
    keys = inbound_sms_event_keys(vonage_ids)
    for start in range(0, len(keys), 1000):
        CallEvent.objects.filter(dedup_key__in=keys[start : start + 1000], payload_redacted=False).update(
            payload=REDACTED_PAYLOAD, payload_redacted=True
        )
    return count


def messages_redact(*, conversation_ids: list[Any]) -> int:
    """Remove the texts, and the real numbers beside them, of the given ended conversations.

    Conversations still open are skipped. Their raw inbound SMS events lose their payload
    too. Idempotent; returns how many messages were redacted. For the retention job:
    call it with batches of ended conversations (a thousand ids or so) past the retention.
    """
    ended = Conversation.objects.filter(pk__in=conversation_ids).exclude(status=Conversation.Status.OPEN)
    with transaction.atomic():
        return _redact(Message.objects.filter(conversation_id__in=ended.values("pk")))


def messages_redact_unattached(*, before: datetime, service_ids: list[int] | None = None) -> int:
    """Remove the texts and real numbers of texts in no conversation (out of session, keywords
    from strangers, auto-replies) received before ``before`` (of ``service_ids`` only, when
    given: retention is per service), and forget senders who are not opted out and got no
    auto-reply since then. For the retention job; idempotent. Opt-outs stay: they must be
    honoured for as long as they stand."""
    rows = Message.objects.filter(conversation__isnull=True, created_at__lt=before)
    contacts = MessageContact.objects.filter(opted_out=False, updated_at__lt=before).filter(
        Q(auto_replied_at__isnull=True) | Q(auto_replied_at__lt=before)
    )
    if service_ids is not None:
        rows = rows.filter(service_id__in=service_ids)
        contacts = contacts.filter(service_id__in=service_ids)
    with transaction.atomic():
        count = _redact(rows)
        contacts.delete()
    return count


# Texts are personal data: they go with the rest of a conversation's (proxy.retention).
personal_data(
    PersonalData(
        name="messages",
        redact=lambda ids: messages_redact(conversation_ids=ids),
        redact_unowned=lambda service, cutoff: messages_redact_unattached(before=cutoff, service_ids=[service.pk]),
    )
)
