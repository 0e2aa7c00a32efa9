"""PIN calls: the prompt a call gets, and what its input events lead to.

A call the dialled number cannot route by caller ID, on a number with open PIN
conversations, is asked for a PIN (``pin_answer``). Its keys arrive as an input event
at ``/webhooks/input`` with the prompt's signed token in the URL (``proxy.pins``):
a PIN of an open conversation on the number connects the caller to the PIN owner's
counterpart, exactly as if the owner had called from their own phone; anything else
is one of ``PIN_TRIES`` tries; after the last one ``pin_tries_exhausted`` decides.

Every input event is kept once (redacted) and applied once: the same event twice
counts one try and gets the same answer. Nothing here raises to a webhook: whatever
arrives, Vonage gets a valid NCCO with a spoken outcome, and a connect only for a
PIN that is right.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from proxy.models import Call, CallEvent, PinCall, Service, insert_row
from proxy.ncco import (
    GENERIC_UNKNOWN_TEXT,
    ncco_for_route,
    not_allowed_ncco,
    pin_prompt_ncco,
    talk_ncco,
    unavailable_ncco,
)
from proxy.phone import from_webhook, mask
from proxy.pins import (
    LOCKOUT_CALLS,
    PIN_TRIES,
    PROMPT_PARAM,
    PinInput,
    PinMatch,
    Prompt,
    caller_locked,
    lockout_after_failure,
    pin_input_read,
    pin_owner,
    prompt_from_token,
    prompt_token,
)
from proxy.selectors import Route, service_of_number
from webhooks.call_control import BLOCKED, BLOCKED_ON_ERROR, InboundCall, call_intercept, call_out_of_session
from webhooks.payloads import event_from_payload, input_payload_redacted, text

logger = logging.getLogger(__name__)

NCCO = list[dict[str, Any]]


def pin_answer(*, route: Route, caller: str | None, dialled: str, call_uuid: str, now: datetime | None = None) -> NCCO:
    """The answer for a ``pin`` route: the prompt, or goodbye at once for a locked-out caller."""
    service = route.service
    if service is None:
        return talk_ncco(GENERIC_UNKNOWN_TEXT, None)
    now = now or timezone.now()
    if caller_locked(proxy_number=dialled, caller=caller or "", now=now):
        logger.info("PIN prompt refused on %s: caller=%s is locked out", dialled, mask(caller) or "withheld")
        return talk_ncco(service.pin_goodbye_text, service)
    return _prompt(service, Prompt(call_uuid=call_uuid, proxy_number=dialled, try_number=1))


def _prompt(service: Service, prompt: Prompt, *, lead: str = "") -> NCCO:
    query = urlencode({PROMPT_PARAM: prompt_token(prompt)})
    return pin_prompt_ncco(service, event_url=f"{settings.PUBLIC_URL}/webhooks/input?{query}", lead=lead)


def prompt_token_from_url(url: Any) -> str:
    """The prompt's token in an input eventUrl as Vonage reports it (a fallback's ``original_request.url``)."""
    if not isinstance(url, str):
        return ""
    values = parse_qs(urlsplit(url[:2000]).query).get(PROMPT_PARAM) or [""]
    return values[0]


def pin_input_safely(*, payload: dict[str, Any], token: str | None, source: str = "input") -> NCCO:
    """``pin_input_receive``, or a spoken apology when even that fails: never a 5xx, never a connect."""
    try:
        return pin_input_receive(payload=payload, token=token, source=source)
    except Exception:
        logger.exception("input webhook failed; speaking the generic message")
        return unavailable_ncco(None)


def pin_input_receive(
    *, payload: dict[str, Any], token: str | None, source: str = "input", now: datetime | None = None
) -> NCCO:
    """Apply an input event (Vonage's shape: ``dtmf: {digits, timed_out}``, ``speech``).

    ``token``: the prompt's, from the eventUrl; without a valid one for this very call the
    call was never prompted, and the caller hears the unknown-caller message.
    """
    now = now or timezone.now()
    prompt = prompt_from_token(token)
    call_uuid = text(payload, "uuid")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The caller hears silence until this answers: the commit need not wait for a disk
            # flush (a crash could lose the last few tries' records, never make one wrong).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        first_time = _input_kept(payload=payload, source=source, now=now)
        if prompt is None or not call_uuid or call_uuid != prompt.call_uuid:
            logger.warning("input event for a call that was never prompted (%s, via %s)", call_uuid or "-", source)
            return _unprompted(payload)
        service = service_of_number(number=prompt.proxy_number)
        if service is None:
            return talk_ncco(GENERIC_UNKNOWN_TEXT, None)
        caller = from_webhook(payload.get("from")) or ""
        if caller_locked(proxy_number=prompt.proxy_number, caller=caller, now=now, except_call=prompt.call_uuid):
            logger.info("PIN input refused on %s: caller=%s is locked out", prompt.proxy_number, mask(caller))
            return talk_ncco(service.pin_goodbye_text, service)
        entered = pin_input_read(payload)
        match = pin_owner(proxy_number=prompt.proxy_number, pin=entered.digits, now=now) if entered.digits else None
        pin_call = _pin_call_locked(prompt=prompt, service=service, caller=caller, now=now)
        ncco = _outcome(
            service=service,
            prompt=prompt,
            entered=entered,
            match=match,
            pin_call=pin_call,
            first_time=first_time,
            now=now,
            call=_inbound(payload, prompt=prompt, caller=caller),
        )
        if match is not None and match.kind == "live" and match.counterpart is not None:
            _call_routed_by_pin(payload=payload, prompt=prompt, match=match, now=now)
        if first_time:
            pin_call.save()
    logger.info(
        "PIN input on %s try %s/%s (caller=%s): %s%s",
        prompt.proxy_number,
        prompt.try_number,
        PIN_TRIES,
        mask(caller) or "withheld",
        entered.kind if match is None else match.kind,
        "" if first_time else " (repeated event)",
    )
    return ncco


def _outcome(
    *,
    service: Service,
    prompt: Prompt,
    entered: PinInput,
    match: PinMatch | None,
    pin_call: PinCall,
    first_time: bool,
    now: datetime,
    call: InboundCall,
) -> NCCO:
    """What the caller hears, and (on a first delivery) the call's record brought up to date."""
    if first_time:
        pin_call.tries = max(pin_call.tries, prompt.try_number)
    if match is not None and match.kind == "live":
        if first_time:
            pin_call.outcome, pin_call.participant, pin_call.locked_until = PinCall.Outcome.CONNECTED, match.owner, None
        if match.counterpart is None:
            return unavailable_ncco(service)
        return _connect_as_owner(service=service, match=match, call=call, first_time=first_time)
    if match is not None:
        if first_time and pin_call.outcome != PinCall.Outcome.CONNECTED:
            pin_call.outcome, pin_call.participant = PinCall.Outcome.ENDED, match.owner
        return talk_ncco(service.ended_text, service)
    last_try = prompt.try_number >= PIN_TRIES
    if first_time and (entered.keyed or last_try):
        pin_call.wrong_pins += 1 if entered.keyed else 0
        _failed(pin_call, now=now)
    if last_try:
        return pin_tries_exhausted(service=service, pin_call=pin_call, call=call, first_time=first_time)
    lead = service.pin_invalid_text if entered.keyed else service.pin_no_input_text
    next_prompt = Prompt(call_uuid=prompt.call_uuid, proxy_number=prompt.proxy_number, try_number=prompt.try_number + 1)
    return _prompt(service, next_prompt, lead=lead)


def pin_tries_exhausted(
    *, service: Service, pin_call: PinCall, call: InboundCall | None = None, first_time: bool = True
) -> NCCO:
    """The decision point after a call's last wrong or empty try: a goodbye and no connect,
    unless the service has an out-of-session hook, which decides instead (DESIGN.md, "Out
    of session"). A repeated delivery of that last input event gets the goodbye: asking the
    hook again could open a second conversation.

    ``pin_call`` says who called which number and how the tries went.
    """
    goodbye = talk_ncco(service.pin_goodbye_text, service)
    if service.out_of_session_url and call is not None and first_time:
        return call_out_of_session(service=service, call=call, default_ncco=goodbye).ncco
    return goodbye


def _connect_as_owner(*, service: Service, match: PinMatch, call: InboundCall, first_time: bool) -> NCCO:
    """Exactly as if the PIN's owner had called from their own phone, the intercept hook included."""
    assert match.counterpart is not None
    route = Route(kind="connect", service=match.service, conversation=match.conversation, callee=match.counterpart)
    if not service.intercept_url:
        return ncco_for_route(route, public_url=settings.PUBLIC_URL)
    if first_time:
        return call_intercept(
            service=service,
            conversation=match.conversation,
            caller_id=match.owner.pk,
            caller_public_id=str(match.owner.public_id),
            callee=match.counterpart,
            call=call,
        ).ncco
    # A repeated input event: the first delivery's decision, as the call's row kept it.
    blocked = Call.objects.filter(uuid=call.uuid, hook_outcome__in=(BLOCKED, BLOCKED_ON_ERROR)).exists()
    return not_allowed_ncco(service) if blocked else ncco_for_route(route, public_url=settings.PUBLIC_URL)


def _inbound(payload: dict[str, Any], *, prompt: Prompt, caller: str) -> InboundCall:
    """The prompted call as the hooks see it: its ids, the caller (None when withheld), the number dialled."""
    return InboundCall(
        uuid=prompt.call_uuid,
        conversation_uuid=text(payload, "conversation_uuid"),
        caller=caller or None,
        dialled=prompt.proxy_number,
        from_raw=text(payload, "from"),
        to_raw=prompt.proxy_number,
    )


def _failed(pin_call: PinCall, *, now: datetime) -> None:
    """Mark the call failed (once) and, when its failure completes a row, lock its caller out."""
    if pin_call.outcome in (PinCall.Outcome.CONNECTED, PinCall.Outcome.ENDED, PinCall.Outcome.FAILED):
        return
    pin_call.outcome, pin_call.failed_at = PinCall.Outcome.FAILED, now
    pin_call.locked_until = lockout_after_failure(pin_call=pin_call)
    if pin_call.locked_until is not None:
        logger.warning(
            "PIN brute force: caller=%s failed %s calls in a row on %s; locked out until %s",
            mask(pin_call.caller) or "withheld",
            LOCKOUT_CALLS,
            pin_call.proxy_number,
            pin_call.locked_until.isoformat(),
        )


def _pin_call_locked(*, prompt: Prompt, service: Service, caller: str, now: datetime) -> PinCall:
    """The call's PIN record, created on its first input, locked for this transaction."""
    PinCall.objects.bulk_create(
        [
            PinCall(
                call_uuid=prompt.call_uuid,
                service=service,
                proxy_number=prompt.proxy_number,
                caller=caller,
                created_at=now,
            )
        ],
        ignore_conflicts=True,
    )
    return PinCall.objects.select_for_update().get(call_uuid=prompt.call_uuid)


def _input_kept(*, payload: dict[str, Any], source: str, now: datetime) -> bool:
    """Keep the input event once, its keys redacted. False when it was seen before."""
    stored = input_payload_redacted(payload)
    event = event_from_payload(stored)
    # One statement, no savepoint: the caller hears silence while this runs.
    return insert_row(
        CallEvent(
            call_uuid=event.uuid,
            conversation_uuid=event.conversation_uuid,
            kind="input",
            timestamp=event.timestamp,
            received_at=now,
            source=source,
            dedup_key=event.dedup_key,
            payload=stored,
        ),
        unless_exists="dedup_key",
    )


def _call_routed_by_pin(*, payload: dict[str, Any], prompt: Prompt, match: PinMatch, now: datetime) -> None:
    """The inbound leg now belongs to the PIN's conversation: from its owner, to the counterpart.

    The leg's own events may have linked it by its numbers (a cooling pair) or not at all;
    the PIN decides. The connected leg links to it through their shared conversation_uuid.
    """
    # One statement: the row is new, or its first event wrote it (or linked it by a cooling pair).
    Call.objects.bulk_create(
        [
            Call(
                uuid=prompt.call_uuid,
                conversation_uuid=text(payload, "conversation_uuid"),
                direction=Call.Direction.INBOUND,
                from_number=text(payload, "from"),
                to_number=text(payload, "to") or prompt.proxy_number,
                conversation=match.conversation,
                service=match.service,
                from_participant=match.owner,
                to_participant=match.counterpart,
                routed_by=Call.RoutedBy.PIN,
                created_at=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["uuid"],
        update_fields=["conversation", "service", "from_participant", "to_participant", "routed_by", "updated_at"],
    )


def _unprompted(payload: dict[str, Any]) -> NCCO:
    """For an input event no prompt of ours asked for: the dialled number's unknown-caller message."""
    dialled = from_webhook(payload.get("to"))
    service = service_of_number(number=dialled) if dialled else None
    return talk_ncco(service.unknown_caller_text if service else GENERIC_UNKNOWN_TEXT, service)
