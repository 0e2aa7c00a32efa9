"""Marketplace call control on the answer path: the intercept and out-of-session hooks.

The answer webhook calls these only when the service has the hook (the route read
brings the whole service, so finding out costs nothing). Each one asks the marketplace
(``proxy.hooks``), applies DESIGN.md's "Intercept" or "Out of session" to whatever the
hook did (garbage, HTML, a huge body, a redirect, a refused address, silence: the
documented fallback), writes what happened on the call's row, tells the marketplace
(``call.intercepted``, ``call.out_of_session`` callbacks) and returns the NCCO. They
never raise for anything the hook does, and never log a real number.

They take what they need, not a route, so that other ways of routing a call (a PIN
entered at a prompt) decide the same way: ``call_intercept`` for a caller who is to be
connected, ``call_out_of_session`` for one who holds no open conversation on the number.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from proxy import participants, phone, services
from proxy.callbacks import DELIVER_TASK, callback_create, conversation_data
from proxy.errors import DomainError, InvalidInput
from proxy.hook_replies import (
    ConnectReply,
    InvalidReply,
    OpenReply,
    TalkReply,
    out_of_session_reply_parse,
    reply_json,
)
from proxy.hooks import HOOK_INTERCEPT, HOOK_OUT_OF_SESSION, HookExchange, hook_call
from proxy.models import Call, Conversation, Participant, Service
from proxy.ncco import connect_ncco, connect_number_ncco, not_allowed_ncco, talk_ncco
from proxy.outbox import queue_on_commit, truncate
from proxy.selectors import conversation_last_held, conversation_whole, is_pool_number
from webhooks.payloads import text

logger = logging.getLogger(__name__)

ALLOWED = "allowed"
BLOCKED = "blocked"
ALLOWED_ON_ERROR = "allowed_on_error"
BLOCKED_ON_ERROR = "blocked_on_error"
DEFAULT = "default"


@dataclass(frozen=True)
class InboundCall:
    """The inbound leg being answered: Vonage's ids and both numbers.

    ``caller`` and ``dialled`` are E.164 digits (None when withheld or unreadable);
    ``from_raw`` and ``to_raw`` are what Vonage sent, as the call's row keeps them.
    """

    uuid: str
    conversation_uuid: str
    caller: str | None
    dialled: str | None
    from_raw: str = ""
    to_raw: str = ""


def inbound_call_from_payload(payload: dict[str, Any]) -> InboundCall:
    """The InboundCall of an answer (or input) webhook's payload."""
    return InboundCall(
        uuid=text(payload, "uuid"),
        conversation_uuid=text(payload, "conversation_uuid"),
        caller=phone.from_webhook(payload.get("from")),
        dialled=phone.from_webhook(payload.get("to")),
        from_raw=text(payload, "from"),
        to_raw=text(payload, "to"),
    )


@dataclass(frozen=True)
class CallDecision:
    """What a hook decided for a call: the NCCO, and what is kept on the call and told to the marketplace.

    ``outcome``: intercept ``allowed`` | ``blocked`` | ``allowed_on_error`` | ``blocked_on_error``;
    out of session ``talk`` | ``connect`` | ``open`` | ``default``. ``detail`` says why,
    without real numbers. ``conversation`` and the participant ids link the call.
    """

    ncco: list[dict[str, Any]]
    hook: str
    event: str
    outcome: str
    status_code: int | None
    detail: str
    elapsed_ms: int | None
    conversation: Conversation | None = None
    from_participant_id: int | None = None
    to_participant_id: int | None = None
    # The same participants as hooks, callbacks and the API show them (opaque ids).
    from_participant_public: str | None = None
    to_participant_public: str | None = None

    @property
    def summary(self) -> str:
        """One line for people (the try-a-call page, logs): ``call.intercept: allowed (HTTP 200, 3 ms)``."""
        timing = f", {self.elapsed_ms} ms" if self.elapsed_ms is not None else ""
        return f"{self.event}: {self.outcome} ({self.detail}{timing})"


# --- Intercept -----------------------------------------------------------------------------------


def call_intercept(
    *,
    service: Service,
    conversation: Conversation,
    caller_id: int | None,
    callee: Participant,
    call: InboundCall,
    caller_public_id: str | None = None,
) -> CallDecision:
    """Ask ``service.intercept_url`` whether the caller may be connected to ``callee``.

    2xx: connect as usual (``proxy.ncco.connect_ncco``); 403: the service's "not allowed"
    text and no connect; anything else, a failure or no answer within HOOK_TIMEOUT:
    ``service.intercept_on_error`` decides (allow connects, block says the same text).
    ``caller_id``: the caller's participant (the PIN's owner for a call routed by PIN), and
    ``caller_public_id`` its opaque id, which the hook is shown.
    The service must have an ``intercept_url``.
    """
    conversation = _whole(conversation)
    data = {
        "conversation": conversation_data(conversation),
        "call": {"uuid": call.uuid, "from_participant": caller_public_id, "to_participant": str(callee.public_id)},
    }
    exchange = hook_call(service=service, url=service.intercept_url, event=HOOK_INTERCEPT, data=data)
    status = exchange.status
    if status is not None and 200 <= status < 300:
        outcome = ALLOWED
    elif status == 403:
        outcome = BLOCKED
    else:
        allow = service.intercept_on_error != Service.InterceptOnError.BLOCK
        outcome = ALLOWED_ON_ERROR if allow else BLOCKED_ON_ERROR
        logger.warning(
            "intercept hook for call %s of service %s: %s; %s", call.uuid, service.slug, exchange.reason, outcome
        )
    if outcome in (ALLOWED, ALLOWED_ON_ERROR):
        ncco = connect_ncco(service=service, conversation=conversation, callee=callee, public_url=settings.PUBLIC_URL)
    else:
        ncco = not_allowed_ncco(service)
    decision = CallDecision(
        ncco=ncco,
        hook=Call.Hook.INTERCEPT,
        event=HOOK_INTERCEPT,
        outcome=outcome,
        status_code=status,
        detail=exchange.reason,
        elapsed_ms=exchange.elapsed_ms,
        conversation=conversation,
        from_participant_id=caller_id,
        to_participant_id=callee.pk,
        from_participant_public=caller_public_id,
        to_participant_public=str(callee.public_id),
    )
    _record(decision, service=service, call=call)
    return decision


def _whole(conversation: Conversation) -> Conversation:
    """The conversation with every field (the route read brings only what routing needs)."""
    if not conversation.get_deferred_fields():
        return conversation
    return conversation_whole(conversation_id=conversation.pk) or conversation


# --- Out of session ------------------------------------------------------------------------------


class _Fallback(Exception):
    """The hook's reply cannot be acted on: the default message plays."""


def call_out_of_session(*, service: Service, call: InboundCall, default_ncco: list[dict[str, Any]]) -> CallDecision:
    """Ask ``service.out_of_session_url`` what to do with a caller who holds no open
    conversation on the number dialled (unknown, withheld, ended, expired, cooling).

    A 200 JSON reply acts: ``talk`` says its text and hangs up; ``connect`` connects the
    caller to its number with the dialled number as caller ID; ``open`` opens a
    conversation between the caller and its participant exactly as the API does (same
    allocation, invariants, SMS and callbacks; the caller keeps the dialled number when
    it is free for them) and connects them at once. Anything else, an error or a timeout:
    ``default_ncco`` (what the caller would have heard without the hook). The hook is
    the one exchange that carries a real number: the caller's, to the service that owns
    the number dialled. ``call.dialled`` must be a number of ``service``'s pool.
    """
    held = (
        conversation_last_held(service=service, real_number=call.caller, proxy_number=call.dialled)
        if call.caller and call.dialled
        else None
    )
    latest = held.conversation if held is not None else None
    data = {
        "from": call.caller,
        "to": call.dialled,
        "conversation": conversation_data(latest) if latest is not None else None,
    }
    exchange = hook_call(service=service, url=service.out_of_session_url, event=HOOK_OUT_OF_SESSION, data=data)
    try:
        decision = _act(exchange, service=service, call=call, latest=latest)
    except (_Fallback, InvalidReply) as exc:
        reason = str(exc)
        logger.warning(
            "out-of-session hook for call %s of service %s: %s; default message", call.uuid, service.slug, reason
        )
        decision = _out_of_session(exchange, DEFAULT, default_ncco, detail=reason, conversation=latest)
    except Exception:
        # A bug or a database failure while acting must still leave the caller a message.
        logger.exception("out-of-session hook for call %s: acting on the reply failed; default message", call.uuid)
        decision = _out_of_session(
            exchange, DEFAULT, default_ncco, detail="acting on the reply failed", conversation=latest
        )
    _record(decision, service=service, call=call)
    return decision


def _out_of_session(
    exchange: HookExchange,
    outcome: str,
    ncco: list[dict[str, Any]],
    *,
    detail: str,
    conversation: Conversation | None,
    from_participant: Participant | None = None,
    to_participant: Participant | None = None,
) -> CallDecision:
    return CallDecision(
        ncco=ncco,
        hook=Call.Hook.OUT_OF_SESSION,
        event=HOOK_OUT_OF_SESSION,
        outcome=outcome,
        status_code=exchange.status,
        detail=truncate(detail, 200),
        elapsed_ms=exchange.elapsed_ms,
        conversation=conversation,
        from_participant_id=from_participant.pk if from_participant else None,
        to_participant_id=to_participant.pk if to_participant else None,
        from_participant_public=str(from_participant.public_id) if from_participant else None,
        to_participant_public=str(to_participant.public_id) if to_participant else None,
    )


def _act(exchange: HookExchange, *, service: Service, call: InboundCall, latest: Conversation | None) -> CallDecision:
    if exchange.status != 200:
        raise _Fallback(exchange.reason)
    reply = out_of_session_reply_parse(reply_json(exchange.body))
    if isinstance(reply, TalkReply):
        return _out_of_session(exchange, "talk", talk_ncco(reply.text, service), detail="HTTP 200", conversation=latest)
    if isinstance(reply, ConnectReply):
        return _connect(exchange, reply, service=service, call=call, latest=latest)
    return _open(exchange, reply, service=service, call=call)


def _connect(
    exchange: HookExchange, reply: ConnectReply, *, service: Service, call: InboundCall, latest: Conversation | None
) -> CallDecision:
    assert call.dialled is not None
    try:
        number = participants.number_normalize(reply.number, country=None, default_country=service.default_country)
    except phone.InvalidNumber:
        raise _Fallback("connect: not a valid phone number") from None
    if number == call.caller:
        raise _Fallback("connect: the caller's own number")
    if is_pool_number(number):
        # Calling one of our own numbers would route the call back here.
        raise _Fallback("connect: a proxy number")
    ncco = connect_number_ncco(service=service, number=number, caller_id=call.dialled, public_url=settings.PUBLIC_URL)
    return _out_of_session(exchange, "connect", ncco, detail="HTTP 200", conversation=latest)


def _open(exchange: HookExchange, reply: OpenReply, *, service: Service, call: InboundCall) -> CallDecision:
    if call.caller is None or call.dialled is None:
        raise _Fallback("open: the caller's number is withheld")
    try:
        people = participants.participants_normalize(
            [{"number": call.caller}, reply.participant], default_country=service.default_country
        )
    except InvalidInput as exc:
        raise _Fallback(f"open: invalid participant ({_fields(exc.errors)})") from None
    try:
        conversation = services.conversation_open(
            service=service,
            people=people,
            ttl=reply.ttl,
            external_id=reply.external_id,
            metadata=reply.metadata,
            keep_numbers={call.caller: call.dialled},
        )
    except DomainError as exc:
        raise _Fallback(f"open: {exc.code}") from None
    caller, callee = list(conversation.participants.all())
    ncco = connect_ncco(service=service, conversation=conversation, callee=callee, public_url=settings.PUBLIC_URL)
    return _out_of_session(
        exchange,
        "open",
        ncco,
        detail="HTTP 200",
        conversation=conversation,
        from_participant=caller,
        to_participant=callee,
    )


def _fields(errors: Any) -> str:
    """The names of the bad fields of a participant error, never their values."""
    names: list[str] = []
    items = errors.get("participants", []) if isinstance(errors, dict) else []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            names += list(item)
        elif isinstance(item, str):
            names.append(item)
    return ", ".join(dict.fromkeys(names)) or "invalid"


# --- What is kept and told -----------------------------------------------------------------------


def _record(decision: CallDecision, *, service: Service, call: InboundCall) -> None:
    """Keep the decision on the call's row (created now if no event came first) and call back.

    One statement without a hook's callback: the caller waits for this request. Its commit
    is asynchronous (losing the row in a crash costs an audit line; the call's events
    write it again).
    """
    if not call.uuid:
        return
    row = Call(
        uuid=call.uuid,
        conversation_uuid=call.conversation_uuid,
        conversation=decision.conversation,
        service=service,
        direction=Call.Direction.INBOUND,
        from_participant_id=decision.from_participant_id,
        to_participant_id=decision.to_participant_id,
        from_number=call.from_raw[:64],
        to_number=call.to_raw[:64],
        hook=decision.hook,
        hook_outcome=decision.outcome,
        hook_status_code=decision.status_code,
        hook_detail=truncate(decision.detail, 200),
        hook_ms=decision.elapsed_ms,
    )
    try:
        if not service.callback_url:
            # In a caller's transaction (a PIN's input event), a savepoint: a failed upsert
            # must not abort the transaction the caller's answer is still being read in.
            with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
                _call_upsert(row, linked=decision.conversation is not None)
            return
        with transaction.atomic():
            _call_upsert(row, linked=decision.conversation is not None)
            delivery = callback_create(
                service=service, event=_callback_event(decision), data=_callback_data(decision, call)
            )
            if delivery is not None:
                queue_on_commit(DELIVER_TASK, delivery.pk)
    except Exception:
        # The caller still gets the decision; the call's events write its row.
        logger.exception("could not keep the hook decision for call %s", call.uuid)


_HOOK_FIELDS = ("hook", "hook_outcome", "hook_status_code", "hook_detail", "hook_ms", "service", "updated_at")
_LINK_FIELDS = ("conversation", "from_participant", "to_participant")


def _call_upsert(row: Call, *, linked: bool) -> None:
    """Insert the call's row, or give an existing one (its first event came first) the
    hook's outcome and, when ``linked``, the conversation and participants.

    Fixed SQL rather than the ORM, whose query building cost more than the statement.
    On PostgreSQL ``RETURNING set_config(...)`` makes this statement's own commit
    asynchronous (``synchronous_commit`` local to its transaction) in the same round trip.
    """
    fields = [f for f in Call._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_call_upsert_sql(connection.vendor, linked), values)


@functools.cache
def _call_upsert_sql(vendor: str, linked: bool) -> str:
    fields = [f for f in Call._meta.concrete_fields if not f.primary_key]
    updated = [Call._meta.get_field(name) for name in (*_HOOK_FIELDS, *(_LINK_FIELDS if linked else ()))]
    quoted = {f.name: connection.ops.quote_name(str(f.column)) for f in Call._meta.concrete_fields}
    columns = ", ".join(quoted[f.name] for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    changes = ", ".join(f"{quoted[f.name]} = excluded.{quoted[f.name]}" for f in updated)
    returning = " RETURNING set_config('synchronous_commit', 'off', true)" if vendor == "postgresql" else ""
    return (
        f"INSERT INTO {Call._meta.db_table} ({columns}) VALUES ({marks}) "  # noqa: S608 (names from model metadata)
        f"ON CONFLICT (uuid) DO UPDATE SET {changes}{returning}"
    )


def _callback_event(decision: CallDecision) -> str:
    return "call.intercepted" if decision.hook == Call.Hook.INTERCEPT else "call.out_of_session"


def _callback_data(decision: CallDecision, call: InboundCall) -> dict[str, Any]:
    """No real number here: the callback is not the hook (the dialled proxy number is ours)."""
    conversation = decision.conversation
    data: dict[str, Any] = {
        "call": {
            "uuid": call.uuid,
            "conversation_uuid": call.conversation_uuid,
            "direction": Call.Direction.INBOUND.value,
            "from_participant": decision.from_participant_public,
            "to_participant": decision.to_participant_public,
        },
        "conversation": conversation_data(conversation) if conversation is not None else None,
        "hook": {
            "outcome": decision.outcome,
            "status_code": decision.status_code,
            "detail": decision.detail,
            "elapsed_ms": decision.elapsed_ms,
        },
    }
    if decision.hook == Call.Hook.OUT_OF_SESSION:
        data["to"] = call.dialled
        data["caller_withheld"] = call.caller is None
    return data
