"""What the webhooks do: route an answer request, keep the call log from events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from proxy import side_effects
from proxy.models import Call, CallEvent, Participant, Recording, Service
from proxy.ncco import ncco_for_route, unavailable_ncco
from proxy.phone import from_webhook, mask
from proxy.selectors import Route, route_for_call
from webhooks.call_control import CallDecision, call_intercept, call_out_of_session, inbound_call_from_payload
from webhooks.payloads import (
    FALLBACK_ONLY_FIELDS,
    NCCO_REPLACING_STATUSES,
    PROGRESS_RANK,
    TERMINAL_STATUSES,
    Event,
    decimal,
    event_from_payload,
    text,
    timestamp,
    whole_seconds,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """The NCCO for an answer request, and what a hook decided on the way, if one was asked."""

    ncco: list[dict[str, Any]]
    decision: CallDecision | None = None


def answer_call(*, payload: dict[str, Any]) -> Answer:
    """The NCCO for an inbound call. Never raises for bad input: unknown callers hear a message."""
    caller = from_webhook(payload.get("from"))
    dialled = from_webhook(payload.get("to"))
    # One indexed read and nothing written: the caller hears silence until we answer. The
    # call's row is written by its first event, which finds the conversation by the same
    # (real number, proxy number) pair (_link_by_numbers). Only a hook, when the service
    # has one, adds its exchange and the call's row with what it decided.
    route = route_for_call(caller=caller, proxy_number=dialled)
    uuid = text(payload, "uuid")
    logger.info("answer %s: caller=%s dialled=%s -> %s", uuid or "-", mask(caller), dialled or "-", route.kind)
    service = route.service
    # The route read brought the whole service: without hooks this costs nothing more.
    if service is not None and (service.intercept_url or service.out_of_session_url):
        decision = _hook_decision(route, service, payload)
        if decision is not None:
            return Answer(decision.ncco, decision)
    return Answer(ncco_for_route(route, public_url=settings.PUBLIC_URL))


def _hook_decision(route: Route, service: Service, payload: dict[str, Any]) -> CallDecision | None:
    """Ask the service's hook, when it has the one this route needs (a call row is then written)."""
    if route.kind == "connect":
        if not service.intercept_url or route.conversation is None or route.callee is None:
            return None
        return call_intercept(
            service=service,
            conversation=route.conversation,
            caller_id=route.caller_id,
            callee=route.callee,
            call=inbound_call_from_payload(payload),
        )
    call = inbound_call_from_payload(payload)
    if not service.out_of_session_url or call.dialled is None:
        return None
    return call_out_of_session(
        service=service, call=call, default_ncco=ncco_for_route(route, public_url=settings.PUBLIC_URL)
    )


def answer_safely(*, payload: dict[str, Any]) -> Answer:
    """answer_call, or the generic message when even that fails: never a 5xx to Vonage."""
    try:
        return answer_call(payload=payload)
    except Exception:
        logger.exception("answer webhook failed; speaking the generic message")
        return Answer(unavailable_ncco(None))


def failed_connect_ncco(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """What a caller hears when the event of a failed synchronous connect could not be kept."""
    if text(payload, "status", 20).lower() in NCCO_REPLACING_STATUSES:
        return unavailable_ncco(None)
    return None


def fallback_receive(*, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Vonage's fallback: an answer is routed exactly as /answer would; an event is kept,
    and whatever it was, Vonage gets a valid NCCO (an invalid one or an error drops the call)."""
    original = payload.get("original_request")
    kind = text(original, "type", 10) if isinstance(original, dict) else ""
    logger.warning("fallback webhook (%s): reason=%s", kind or "unknown", text(payload, "reason", 200) or "-")
    if kind == "event" or (not kind and "status" in payload):
        try:
            ncco = event_receive(payload=payload, source="fallback").ncco
        except Exception:
            # Vonage's last try: an error here would drop the call.
            logger.exception("fallback webhook failed to keep an event")
            ncco = None
        return ncco or unavailable_ncco(None)
    return answer_safely(payload={k: v for k, v in payload.items() if k not in FALLBACK_ONLY_FIELDS}).ncco


@dataclass(frozen=True)
class EventOutcome:
    call: Call | None
    ncco: list[dict[str, Any]] | None = None


def event_receive(*, payload: dict[str, Any], source: str = "event", now: datetime | None = None) -> EventOutcome:
    """Keep an event once and bring its call up to date. Order and repetition do not matter."""
    now = now or timezone.now()
    event = event_from_payload(payload)
    with transaction.atomic():
        call = _call_for_event(event) if event.uuid else None
        try:
            with transaction.atomic():
                CallEvent.objects.create(
                    call=call,
                    call_uuid=event.uuid,
                    conversation_uuid=event.conversation_uuid,
                    kind=event.kind,
                    status=event.status if event.kind in ("status", "machine") else "",
                    timestamp=event.timestamp,
                    received_at=now,
                    source=source,
                    dedup_key=event.dedup_key,
                    payload=payload,
                )
        except IntegrityError:
            pass  # seen before: kept once, applied once
        else:
            if call is not None and event.kind == "status":
                _apply_status(call, event, now=now)
            if event.kind == "record":
                recording_announced(payload=payload, call=call)
    ncco = None
    if call is not None and event.status in NCCO_REPLACING_STATUSES and call.direction == Call.Direction.OUTBOUND:
        ncco = unavailable_ncco(call.conversation.service if call.conversation else call.service)
    return EventOutcome(call=call, ncco=ncco)


def _call_for_event(event: Event) -> Call:
    """The call row for the event's leg, created if new, locked for the update."""
    payload = event.payload
    direction = text(payload, "direction", 10)
    Call.objects.bulk_create(
        [
            Call(
                uuid=event.uuid,
                conversation_uuid=event.conversation_uuid,
                direction=direction if direction in Call.Direction else "",
                from_number=text(payload, "from"),
                to_number=text(payload, "to"),
            )
        ],
        ignore_conflicts=True,
    )
    call = Call.objects.select_for_update(of=("self",)).select_related("conversation__service").get(uuid=event.uuid)
    # An out-of-session hook's decision already says where the call belongs.
    if call.conversation_id is None and call.hook != Call.Hook.OUT_OF_SESSION:
        _link_to_conversation(call)
    return call


def _link_to_conversation(call: Call) -> None:
    """Find the leg's conversation: through another leg of the same Vonage conversation
    (our connect's leg shares the inbound leg's conversation_uuid), else by its numbers.

    The leg an out-of-session hook's ``connect`` rang belongs to no conversation: it takes
    the service of the inbound leg and nothing else (never a conversation its numbers
    happen to match).
    """
    sibling = (
        Call.objects.filter(conversation_uuid=call.conversation_uuid)
        .filter(Q(conversation__isnull=False) | Q(hook=Call.Hook.OUT_OF_SESSION))
        .exclude(pk=call.pk)
        .select_related("conversation__service")
        .order_by(F("conversation_id").asc(nulls_last=True), "-created_at")
        .first()
        if call.conversation_uuid
        else None
    )
    if sibling is not None and sibling.conversation_id is None:
        call.service_id = sibling.service_id
        call.direction = call.direction or Call.Direction.OUTBOUND
        call.save(update_fields=["service", "direction", "updated_at"])
        return
    if sibling is not None:
        call.conversation = sibling.conversation
        call.service_id = sibling.service_id
        call.from_participant_id = sibling.from_participant_id
        call.to_participant_id = sibling.to_participant_id
        if not call.direction:
            call.direction = Call.Direction.OUTBOUND
    elif not _link_by_numbers(call):
        return
    call.save(
        update_fields=["conversation", "service", "from_participant", "to_participant", "direction", "updated_at"]
    )


def _link_by_numbers(call: Call) -> bool:
    """Reverse-map the leg's own numbers, as the answer webhook routed them.

    Inbound legs run from a participant's real number to their proxy number; the legs
    our connect creates run from the callee's proxy number to the callee's real number.
    """
    caller, dialled = from_webhook(call.from_number), from_webhook(call.to_number)
    if not caller or not dialled:
        return False
    if call.direction == Call.Direction.OUTBOUND:
        real, proxy = dialled, caller
    else:
        real, proxy = caller, dialled
    # Only a pair that still routes (open, or cooling down) explains the call; a late call
    # long after the conversation heard the unknown-caller message and belongs to nobody.
    person = (
        Participant.objects.filter(real_number=real, proxy_number__number=proxy, proxy_number__service=F("service"))
        .filter(Q(active=True) | Q(cooldown_until__gt=call.created_at))
        .order_by("-active", "-created_at")
        .select_related("conversation")
        .first()
    )
    if person is None:
        return False
    other = Participant.objects.filter(conversation_id=person.conversation_id).exclude(pk=person.pk).first()
    call.conversation = person.conversation
    call.service_id = person.service_id
    if call.direction == Call.Direction.OUTBOUND:
        call.from_participant, call.to_participant = other, person
    else:
        call.from_participant, call.to_participant = person, other
    return True


def _apply_status(call: Call, event: Event, *, now: datetime) -> None:
    """A terminal status is final; before one, the later timestamp wins (ties: the further status)."""
    status = event.status
    at = event.timestamp or now
    payload = event.payload
    fields: set[str] = set()
    became_completed = False
    if call.status in TERMINAL_STATUSES:
        pass  # final; completed below still fills the figures, late events still fill times
    elif status in TERMINAL_STATUSES:
        call.status, call.status_at, call.detail = status, at, text(payload, "detail", 100)
        fields |= {"status", "status_at", "detail"}
        became_completed = status == "completed"
        if call.ended_at is None:
            call.ended_at = at
            fields.add("ended_at")
    else:
        newer = call.status_at is None or at > call.status_at
        tie_further = at == call.status_at and PROGRESS_RANK[status] > PROGRESS_RANK.get(call.status, -1)
        if newer or tie_further:
            call.status, call.status_at = status, at
            fields |= {"status", "status_at"}
    if status == "started" and call.started_at is None:
        call.started_at = at
        fields.add("started_at")
    # Each leg tells the marketplace once that it rang and once that it was answered.
    became_ringing = status == "ringing" and call.ringing_at is None
    if became_ringing:
        call.ringing_at = at
        fields.add("ringing_at")
    became_answered = status == "answered" and call.answered_at is None
    if status == "answered" and (call.answered_at is None or at < call.answered_at):
        call.answered_at = at
        fields.add("answered_at")
    if status == "completed":
        fields |= _fill_completed(call, payload)
    if not call.direction and text(payload, "direction", 10) in Call.Direction:
        call.direction = text(payload, "direction", 10)
        fields.add("direction")
    if fields:
        call.save(update_fields=[*fields, "updated_at"])
    if became_ringing:
        side_effects.call_progressed(call, event="call.ringing")
    if became_answered:
        side_effects.call_progressed(call, event="call.answered")
    if became_completed:
        side_effects.call_progressed(call, event="call.completed")


def _fill_completed(call: Call, payload: dict[str, Any]) -> set[str]:
    values = {
        "duration": whole_seconds(payload, "duration"),
        "price": decimal(payload, "price"),
        "rate": decimal(payload, "rate"),
        "started_at": timestamp(payload, "start_time"),
        "ended_at": timestamp(payload, "end_time"),
        "network": text(payload, "network", 20) or None,
    }
    changed = set()
    for field, value in values.items():
        if value is not None and getattr(call, field) != value:
            setattr(call, field, value)
            changed.add(field)
    return changed


def recording_announced(*, payload: dict[str, Any], call: Call | None = None) -> Recording | None:
    """Keep a recording announced by a record event, once; a worker downloads it."""
    recording_uuid = text(payload, "recording_uuid")
    url = text(payload, "recording_url", 500)
    if not recording_uuid or not url.startswith("https://"):
        return None
    conversation_uuid = text(payload, "conversation_uuid")
    if call is None and conversation_uuid:
        call = (
            Call.objects.filter(conversation_uuid=conversation_uuid, conversation__isnull=False)
            .order_by("created_at")
            .first()
        )
    recording, created = Recording.objects.get_or_create(
        recording_uuid=recording_uuid,
        defaults={
            "call": call,
            "conversation": call.conversation if call else None,
            "conversation_uuid": conversation_uuid,
            "recording_url": url,
            "size": whole_seconds(payload, "size"),
            "started_at": timestamp(payload, "start_time"),
            "ended_at": timestamp(payload, "end_time"),
        },
    )
    if created:
        side_effects.recording_announced(recording)
    return recording


# Raw payloads hold both people's real numbers and, for inbound SMS, what they wrote.
REDACTED_PAYLOAD = {"redacted": True}
_REDACT_BATCH = 5000


def call_event_payloads_redact(*, now: datetime | None = None, keep_days: int | None = None) -> int:
    """Replace the raw payload of events older than the retention with ``REDACTED_PAYLOAD``.

    The event rows stay (kind, status, times, call uuids): the call log keeps its shape;
    the personal data in them goes. ``keep_days`` defaults to CALL_EVENT_RETENTION_DAYS;
    0 keeps payloads for ever. Returns how many were redacted.
    """
    keep_days = settings.CALL_EVENT_RETENTION_DAYS if keep_days is None else keep_days
    if keep_days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=keep_days)
    due = CallEvent.objects.filter(payload_redacted=False, received_at__lt=cutoff)
    redacted = 0
    while True:
        # In batches, each its own short statement: no long lock on a big table.
        ids = list(due.order_by("received_at").values_list("pk", flat=True)[:_REDACT_BATCH])
        if not ids:
            return redacted
        redacted += CallEvent.objects.filter(pk__in=ids, payload_redacted=False).update(
            payload=REDACTED_PAYLOAD, payload_redacted=True
        )
