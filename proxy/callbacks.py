"""Marketplace callbacks, writer side: signed JSON POSTs of conversation, call and message events.

Each event is a ``CallbackDelivery`` row written in the transaction that caused it, with
the exact body that will be sent. A worker (``proxy.delivery.callbacks``) POSTs it,
signed with HMAC-SHA256 over ``"<timestamp>.<body>"``, and retries with backoff for a day.
Hooks (``proxy.hooks``) use the same envelope, body and signatures.

Events: ``conversation.opened|closed|expired``; per call leg ``call.ringing``,
``call.answered``, ``call.completed``; per inbound call a hook or the out-of-session
path decided, ``call.intercepted`` and ``call.out_of_session``. None carries a real
number: people are participant ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils import timezone

from proxy.models import (
    Call,
    CallbackDelivery,
    Conversation,
    CopiedFile,
    Message,
    Participant,
    Recording,
    Service,
    Transcript,
)
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind, queue_on_commit
from proxy.recordings import recording_api_path, transcript_api_path

DELIVER_TASK = "proxy.tasks.deliver_callback"
FAN_OUT_TASK = "proxy.tasks.deliver_callbacks"
RETRY_WINDOW = timedelta(days=1)
# After a rotation the old secret signs too, beside the new one, this long.
SECRET_OVERLAP = timedelta(hours=24)


def callback_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with the service's secret over ``b"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_header(*, service: Service, timestamp: int, body: bytes, now: datetime | None = None) -> str | None:
    """``X-Signature`` for a callback or hook of ``service``; None when it has no secret.

    For ``SECRET_OVERLAP`` after a rotation it carries the new secret's signature and then
    the old one's, comma-separated, so a receiver still holding the old secret verifies.
    """
    if not service.callback_secret:
        return None
    signatures = [callback_signature(secret=service.callback_secret, timestamp=timestamp, body=body)]
    rotated_at = service.callback_secret_rotated_at
    if (
        service.callback_secret_previous
        and rotated_at is not None
        and (now or timezone.now()) < rotated_at + SECRET_OVERLAP
    ):
        signatures.append(callback_signature(secret=service.callback_secret_previous, timestamp=timestamp, body=body))
    return ",".join(signatures)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """A conversation as callbacks and hooks show it (no participants, no numbers)."""
    return {
        "id": str(conversation.id),
        "external_id": conversation.external_id,
        "status": conversation.effective_status,
        "closed_reason": conversation.closed_reason,
        "expires_at": _iso(conversation.expires_at),
        "ended_at": _iso(conversation.ended_at),
        "metadata": conversation.metadata,
    }


def _envelope_of(event: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": event, "created_at": _iso(now), "data": data}


def envelope(event: str, data: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """``{id, type, created_at, data}`` as plain JSON values: the body of a callback or hook."""
    return json.loads(json.dumps(_envelope_of(event, data, now), cls=DjangoJSONEncoder))


def envelope_body(event: str, data: dict[str, Any], *, now: datetime) -> tuple[str, bytes]:
    """The envelope's id and the exact bytes ``payload_body(envelope(...))`` would give, in one pass."""
    payload = _envelope_of(event, data, now)
    return payload["id"], json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()


def _delivery(service: Service, event: str, data: dict[str, Any], now: datetime) -> CallbackDelivery:
    payload = envelope(event, data, now=now)
    return CallbackDelivery(service=service, event=event, payload=payload, url=service.callback_url, created_at=now)


def callback_create_for_conversation(*, conversation: Conversation, event: str) -> CallbackDelivery | None:
    """Queue ``event`` about ``conversation`` for its service's callback URL, if it has one."""
    service = conversation.service
    if not service.callback_url:
        return None
    return callback_create(service=service, event=event, data={"conversation": conversation_data(conversation)})


def callbacks_create_for_conversations(*, conversation_ids: list[Any], event: str) -> list[int]:
    """Set-based: one delivery per ended conversation whose service has a callback URL."""
    now = timezone.now()
    created: list[int] = []
    services: dict[int, Service] = {}
    chunk = 2000
    for start in range(0, len(conversation_ids), chunk):
        conversations = (
            Conversation.objects.filter(pk__in=conversation_ids[start : start + chunk])
            .exclude(service__callback_url="")
            .select_related("service")
        )
        rows = []
        for conversation in conversations:
            service = services.setdefault(conversation.service_id, conversation.service)
            rows.append(_delivery(service, event, {"conversation": conversation_data(conversation)}, now))
        created.extend(row.pk for row in CallbackDelivery.objects.bulk_create(rows, batch_size=1000))
    return created


def _public_ids(row: Call | Message) -> tuple[str | None, str | None]:
    """The opaque ids of a call's or a text's two participants, as the API shows them (never
    the rows' sequential keys): from the participants already loaded, else in one query."""
    found: dict[int, Any] = {}
    missing = []
    for name in ("from_participant", "to_participant"):
        pk = getattr(row, f"{name}_id")
        if pk is None:
            continue
        if type(row)._meta.get_field(name).is_cached(row):  # type: ignore[union-attr]
            found[pk] = getattr(row, name).public_id
        else:
            missing.append(pk)
    if missing:
        found.update(Participant.objects.filter(pk__in=missing).values_list("pk", "public_id"))
    shown = [found.get(pk) if pk is not None else None for pk in (row.from_participant_id, row.to_participant_id)]
    return (str(shown[0]) if shown[0] is not None else None, str(shown[1]) if shown[1] is not None else None)


CALL_EVENTS = ("call.ringing", "call.answered", "call.completed")


def call_data(call: Call) -> dict[str, Any]:
    """A call leg as callbacks show it: participant ids, never numbers."""
    from_participant, to_participant = _public_ids(call)
    return {
        "uuid": call.uuid,
        "conversation_uuid": call.conversation_uuid,
        "status": call.status,
        "direction": call.direction,
        "from_participant": from_participant,
        "to_participant": to_participant,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "duration": call.duration,
        "price": str(call.price) if call.price is not None else None,
    }


def callback_create_for_call(*, call: Call, event: str = "call.completed") -> CallbackDelivery | None:
    """Queue ``event`` (one of CALL_EVENTS) about a leg of a conversation, if its service has a callback URL."""
    conversation = call.conversation
    service = conversation.service if conversation else None
    if service is None or not service.callback_url:
        return None
    data = {"call": call_data(call), "conversation": conversation_data(conversation)}  # type: ignore[arg-type]
    return callback_create(service=service, event=event, data=data)


def callback_create(*, service: Service, event: str, data: dict[str, Any]) -> CallbackDelivery | None:
    """Queue any event with ``data`` as given, if ``service`` has a callback URL.

    ``data`` must hold no real number (the out-of-session hook is the one exchange that
    does, and it is not a callback).
    """
    if not service.callback_url:
        return None
    delivery = _delivery(service, event, data, timezone.now())
    delivery.save()
    return delivery


def callback_create_for_transcript(*, transcript: Transcript) -> CallbackDelivery | None:
    """Queue ``recording.transcribed`` once a transcript is in storage, for the service of its
    conversation, if it has a callback URL. The URLs are the API's, which need the service's key."""
    conversation = transcript.conversation
    service = conversation.service if conversation else None
    if conversation is None or service is None or not service.callback_url:
        return None
    recording_copied = Recording.objects.filter(
        recording_uuid=transcript.recording_uuid, status=CopiedFile.Status.DOWNLOADED
    ).exists()
    call = transcript.call
    data = {
        "recording": {
            "uuid": transcript.recording_uuid,
            "recording_url": settings.PUBLIC_URL + recording_api_path(transcript.recording_uuid)
            if recording_copied
            else None,
            "transcript_url": settings.PUBLIC_URL + transcript_api_path(transcript.recording_uuid),
        },
        "call": {"uuid": call.uuid, "conversation_uuid": call.conversation_uuid} if call else None,
        "conversation": conversation_data(conversation),
    }
    return callback_create(service=service, event="recording.transcribed", data=data)


def _message_data(message: Message, *, service: Service) -> dict[str, Any]:
    """A text in a callback: ids only; its words only when the service asks for them."""
    from_participant, to_participant = _public_ids(message)
    data: dict[str, Any] = {
        "id": message.pk,
        "conversation": str(message.conversation_id) if message.conversation_id else None,
        "from_participant": from_participant,
        "to_participant": to_participant,
        "status": message.api_status,
        "reason": message.reason or None,
        "created_at": _iso(message.created_at),
    }
    if service.callback_includes_text:
        data["text"] = message.text
    return data


def callback_create_for_message(
    *, message: Message, event: str, conversation: Conversation | None = None
) -> CallbackDelivery | None:
    """Queue ``event`` (``message.received``, ``message.held``, ``message.status``) about a
    text of ``conversation`` for its service's callback URL, if it has one."""
    service = message.service
    if service is None or not service.callback_url:
        return None
    data = {
        "message": _message_data(message, service=service),
        "conversation": conversation_data(conversation) if conversation is not None else None,
    }
    return callback_create(service=service, event=event, data=data)


def callback_create_for_text_out_of_session(
    *, message: Message, service: Service, last_held: Participant | None
) -> CallbackDelivery | None:
    """Queue ``message.out_of_session`` for a text kept and not relayed, if the service has a
    callback URL. No real number: the sender is named by its participant id in
    ``last_held``, the latest conversation of the service in which it held the number texted."""
    if not service.callback_url:
        return None
    text: dict[str, Any] = {
        "id": message.pk,
        "to": message.to_number,
        "reason": message.reason or None,
        "created_at": _iso(message.created_at),
    }
    if service.callback_includes_text:
        text["text"] = message.text
    data = {
        "message": text,
        "participant": str(last_held.public_id) if last_held is not None else None,
        "conversation": conversation_data(last_held.conversation) if last_held is not None else None,
    }
    return callback_create(service=service, event="message.out_of_session", data=data)


def callback_retry(*, delivery: CallbackDelivery) -> bool:
    """Staff: deliver a failed callback again, with a fresh day of retries.

    The row's ``created_at`` restarts the retry window; the body keeps the event's own
    ``created_at`` and ``id``, so the marketplace can still tell it is the same event.
    """
    updated = CallbackDelivery.objects.filter(pk=delivery.pk, status=CallbackDelivery.Status.FAILED).update(
        status=CallbackDelivery.Status.PENDING, attempts=0, next_attempt_at=None, created_at=timezone.now()
    )
    if updated:
        queue_on_commit(DELIVER_TASK, delivery.pk)
    return bool(updated)


def payload_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed) for an envelope."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def callback_body(delivery: CallbackDelivery) -> bytes:
    """The exact bytes POSTed (and signed) for a delivery."""
    return payload_body(delivery.payload)


def _waiting() -> QuerySet[CallbackDelivery]:
    return CallbackDelivery.objects.filter(status=CallbackDelivery.Status.PENDING)


CALLBACKS = outbox_kind(
    OutboxKind(
        name="callbacks",
        task=DELIVER_TASK,
        # Bounded by RETRY_WINDOW, not by a count.
        retry=RetryPolicy(base_seconds=30.0, cap_seconds=3600.0),
        waiting=_waiting,
    )
)
