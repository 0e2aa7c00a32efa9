"""What the webhooks do: route an answer request, keep the call log from events, take in
recordings and transcripts, say the recording notice to a callee."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.logs import webhook_outcome
from proxy import side_effects
from proxy.models import Call, CallEvent, CopiedFile, Participant, Recording, Service, Transcript
from proxy.ncco import ncco_for_route, record_notice_ncco, unavailable_ncco
from proxy.phone import from_webhook, mask
from proxy.recordings import recording_announce, transcript_announce
from proxy.selectors import Route, route_for_call
from telephony.registry import get_provider
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
from webhooks.pin_services import pin_answer, pin_input_safely, prompt_token_from_url

logger = logging.getLogger(__name__)

# The route's kind as the request's outcome (config.logs.WEBHOOK_OUTCOMES).
_OUTCOMES = {"connect": "connected", "unknown": "unknown", "ended": "ended"}


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
    webhook_outcome(_OUTCOMES.get(route.kind, route.kind))
    uuid = text(payload, "uuid")
    # DEBUG: the request's own line (config.middleware) already says what happened (its
    # outcome), and the answer webhook keeps to one log line per call.
    if logger.isEnabledFor(logging.DEBUG):  # masking costs more than the check, on every answer
        logger.debug("answer %s: caller=%s dialled=%s -> %s", uuid or "-", mask(caller), dialled or "-", route.kind)
    if route.kind == "pin" and dialled:
        # The PIN prompt comes first; the input webhook asks the hooks once a PIN decided.
        return Answer(pin_answer(route=route, caller=caller, dialled=dialled, call_uuid=uuid))
    service = route.service
    # The route read brought the whole service: without hooks this costs nothing more.
    if service is not None and (service.intercept_url or service.out_of_session_url):
        decision = _hook_decision(route, service, payload)
        if decision is not None:
            webhook_outcome("intercepted")
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
            caller_public_id=route.caller_public_id,
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
        webhook_outcome("error")
        return Answer(unavailable_ncco(None))


def record_notice_safely(*, service_id: str | None) -> list[dict[str, Any]]:
    """The onAnswer NCCO of a recorded conversation's callee: the service's recording notice.

    Never fails and never answers anything but a notice: a callee is bridged into a
    recorded call only after hearing one (the generic notice when the service cannot be read).
    """
    service = None
    try:
        if service_id and service_id.isascii() and service_id.isdigit() and len(service_id) < 19:
            service = Service.objects.filter(pk=int(service_id)).first()
    except Exception:
        logger.exception("record-notice webhook could not read service %r; saying the generic notice", service_id)
    return record_notice_ncco(service)


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
    if "dtmf" in payload or "speech" in payload:
        # An input event our PIN prompt asked for: its token is in the original URL.
        token = prompt_token_from_url(original.get("url")) if isinstance(original, dict) else ""
        return pin_input_safely(payload=payload, token=token, source="fallback")
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
    if event.kind == "input":
        # Our PIN prompts send theirs to /webhooks/input: this one was never asked for.
        return EventOutcome(call=None, ncco=pin_input_safely(payload=payload, token=None, source=source))
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
                recording_announced(payload=payload)
            elif event.kind == "transcription":
                transcript_announced(payload=payload)
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
        call.routed_by = sibling.routed_by
        if not call.direction:
            call.direction = Call.Direction.OUTBOUND
    elif not _link_by_numbers(call):
        return
    call.save(
        update_fields=[
            "conversation",
            "service",
            "from_participant",
            "to_participant",
            "direction",
            "routed_by",
            "updated_at",
        ]
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
    # A participant who routes only by PIN is never found by numbers (webhooks.pin_services).
    person = (
        Participant.objects.filter(
            real_number=real, proxy_number__number=proxy, proxy_number__service=F("service"), routes_by_pair=True
        )
        .filter(Q(active=True) | Q(active=False, cooldown_until__gt=call.created_at))
        .order_by("-active", "-created_at")
        .select_related("conversation")
        .first()
    )
    if person is None:
        return False
    other = Participant.objects.filter(conversation_id=person.conversation_id).exclude(pk=person.pk).first()
    call.conversation = person.conversation
    call.service_id = person.service_id
    call.routed_by = Call.RoutedBy.PAIR
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


def _vonage_url(payload: dict[str, Any], key: str, recording_uuid: str, noun: str) -> tuple[str, bool]:
    url = text(payload, key, 2000)
    trusted = get_provider().file_url_trusted(url)
    if url and not trusted:
        logger.warning("%s %s announced at a URL that is not Vonage's; never fetched", noun, recording_uuid)
    return url, trusted


def recording_announced(*, payload: dict[str, Any]) -> Recording | None:
    """Keep a recording announced by a record event, once; a worker copies it into storage.

    A URL that is not Vonage's is kept as a failed recording (visible to staff), never fetched.
    """
    recording_uuid = text(payload, "recording_uuid")
    if not recording_uuid:
        logger.warning("record event without a recording_uuid: kept as an event only")
        return None
    url, trusted = _vonage_url(payload, "recording_url", recording_uuid, "recording")
    return recording_announce(
        recording_uuid=recording_uuid,
        url=url,
        trusted=trusted,
        conversation_uuid=text(payload, "conversation_uuid"),
        size=whole_seconds(payload, "size"),
        started_at=timestamp(payload, "start_time"),
        ended_at=timestamp(payload, "end_time"),
    )


def transcript_announced(*, payload: dict[str, Any]) -> Transcript | None:
    """Keep a transcript announced by the transcription webhook, once; a worker copies it.

    No URL (Vonage could not transcribe) or a URL that is not Vonage's: kept as a failed
    transcript, visible to staff, never fetched.
    """
    recording_uuid = text(payload, "recording_uuid")
    if not recording_uuid:
        logger.warning("transcription webhook without a recording_uuid: kept as an event only")
        return None
    url, trusted = _vonage_url(payload, "transcription_url", recording_uuid, "transcript")
    transcript = transcript_announce(
        recording_uuid=recording_uuid, url=url, trusted=trusted, conversation_uuid=text(payload, "conversation_uuid")
    )
    if not url:
        # Only the row this webhook made: a later one without a URL must not undo a transcript.
        status = text(payload, "status", 40) or "none"
        Transcript.objects.filter(pk=transcript.pk, transcription_url="", status=CopiedFile.Status.FAILED).update(
            last_error=f"Vonage sent no transcript (status {status})"
        )
    return transcript
