"""Reads: tenant-scoped look-ups and the routing decision for an inbound call."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model, Prefetch, Q, QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.utils import timezone

from proxy.allocation import AllocationView, allocation_view_from_rows
from proxy.models import (
    ApiKey,
    Call,
    Conversation,
    CopiedFile,
    Message,
    MessageContact,
    Notification,
    Participant,
    Recording,
    Service,
    Transcript,
)
from virtual_numbers.models import VirtualNumber


def conversations_for_service(*, service: Service) -> QuerySet[Conversation]:
    """Everything a service may see of conversations: its own, never another's."""
    return Conversation.objects.filter(service=service)


def conversations_shown(*, service: Service) -> QuerySet[Conversation]:
    """The service's conversations with what the API shows of them, in a fixed number of queries."""
    participants = Participant.objects.order_by("position", "id").prefetch_related(
        Prefetch("notifications", queryset=Notification.objects.order_by("-created_at", "-id"))
    )
    return conversations_for_service(service=service).prefetch_related(Prefetch("participants", queryset=participants))


def calls_for_conversation(*, conversation: Conversation) -> QuerySet[Call]:
    return Call.objects.filter(conversation=conversation).order_by("-created_at", "-pk")


def calls_shown(*, conversation: Conversation) -> QuerySet[Call]:
    """A conversation's calls, newest first, with their recordings and transcripts."""
    return (
        calls_for_conversation(conversation=conversation)
        # Participants are shown by their public ids: one join, not a query per call.
        .select_related("from_participant", "to_participant")
        .prefetch_related("recordings", "transcripts")
    )


def _copied_for_service(model: type[CopiedFile], service: Service, recording_uuid: str) -> Any:
    return (
        model._default_manager.filter(recording_uuid=recording_uuid, status=CopiedFile.Status.DOWNLOADED)
        .filter(Q(conversation__service=service) | Q(call__service=service))
        .exclude(file="")
        .first()
    )


def recording_for_service(*, service: Service, recording_uuid: str) -> Recording | None:
    """A copied recording of one of the service's calls or conversations; None for any other."""
    return _copied_for_service(Recording, service, recording_uuid)


def transcript_for_service(*, service: Service, recording_uuid: str) -> Transcript | None:
    """A copied transcript of one of the service's calls or conversations; None for any other."""
    return _copied_for_service(Transcript, service, recording_uuid)


def is_pool_number(number: str) -> bool:
    """Whether ``number`` is one of the account's virtual numbers (any service, any state)."""
    return VirtualNumber.objects.filter(number=number).exists()


@dataclass(frozen=True)
class Route:
    """What to do with an inbound call.

    ``connect``: ring ``callee`` (caller ID ``callee.proxy_number_id``); ``caller_id`` is
    the caller's own participant;
    ``ended``: the pair belonged to a conversation that is over;
    ``pin``: ask for a PIN, the dialled number has open PIN conversations (``service`` owns it);
    ``unknown``: nothing matches (``service`` is the owner of the dialled number, if any).
    ``service`` is read whole with the route: whether it has hooks costs no query.
    """

    kind: Literal["connect", "ended", "pin", "unknown"]
    service: Service | None = None
    conversation: Conversation | None = None
    callee: Participant | None = None
    caller_id: int | None = None
    # The caller's opaque id, as hooks and the API show participants.
    caller_public_id: str | None = None


def route_for_call(*, caller: str | None, proxy_number: str | None, now: datetime | None = None) -> Route:
    """Reverse-map (caller's real number, number dialled) to the other participant.

    The connect case is one indexed read: the partial unique index on open
    (real_number, proxy_number) of participants that route by their number finds the
    caller's row, joined to the callee's. Any other case is one more read, of the
    number's owner: a number with open PIN conversations asks for a PIN (before saying
    that a cooling pair's conversation has ended); otherwise a cooling pair hears that
    its conversation has ended, anyone else the unknown-caller message.
    """
    if not proxy_number:
        return Route(kind="unknown")
    now = now or timezone.now()
    # The default database's connection, looked up once for both reads.
    db = connections[DEFAULT_DB_ALIAS]
    if caller:
        found = _open_route(caller=caller, proxy_number=proxy_number, db=db)
        if found is not None:
            callee, conversation, service, caller_id, caller_public_id = found
            if conversation.expires_at <= now:
                # Expired before any sweep wrote it down: ended during the cooldown, then unknown.
                cooling_until = conversation.expires_at + timedelta(seconds=service.cooldown)
                kind: Literal["ended", "unknown"] = "ended" if now < cooling_until else "unknown"
                return Route(kind=kind, service=service, conversation=conversation)
            return Route(
                kind="connect",
                service=service,
                conversation=conversation,
                callee=callee,
                caller_id=caller_id,
                caller_public_id=caller_public_id,
            )
    # As text: the lean read's parameters are text (PostgreSQL reads the ISO form as timestamptz).
    at = now.isoformat() if db.vendor == "postgresql" else str(db.ops.adapt_datetimefield_value(now))
    row = _fetch_row(_NUMBER_SQL, [caller or "", at, proxy_number], db)
    if row is None:
        return Route(kind="unknown")
    service_id, pins_open, cooling = row[0], bool(row[1]), bool(row[2])
    owner = _instance(Service, _SERVICE_FIELDS, row[3:]) if service_id is not None else None
    if pins_open and owner is not None:
        return Route(kind="pin", service=owner)
    if cooling:
        return Route(kind="ended", service=owner, conversation=None)
    return Route(kind="unknown", service=owner)


def _select_list(model: type[Model], alias: str, names: list[str] | None = None) -> tuple[list[Field], str]:
    fields = [f for f in model._meta.concrete_fields if names is None or f.attname in names]
    return fields, ", ".join(f'{alias}."{f.column}"' for f in fields)


_CALLEE_FIELDS, _CALLEE_SQL = _select_list(Participant, "callee")
_CONVERSATION_FIELDS, _CONVERSATION_SQL = _select_list(
    Conversation,
    "conversation",
    ["id", "service_id", "status", "expires_at", "record", "call_time_limit", "ring_timeout"],
)
_SERVICE_FIELDS, _SERVICE_SQL = _select_list(Service, "service")
# The caller's row through the partial unique index on open (real_number, proxy_number)
# of participants that route by their number (participant_unique_open_pair_routed),
# the other participant of its conversation, the conversation and its service: one read,
# and no ORM query compilation on the hot path (that cost more than the read itself).
_ROUTE_FROM = """
FROM proxy_participant AS caller
JOIN proxy_participant AS callee ON callee.conversation_id = caller.conversation_id AND callee.id <> caller.id
JOIN proxy_conversation AS conversation ON conversation.id = caller.conversation_id
JOIN proxy_service AS service ON service.id = conversation.service_id
"""
_ROUTE_WHERE = """
WHERE caller.real_number = %s AND caller.proxy_number = %s AND caller.active AND caller.routes_by_pair
    AND callee.active
LIMIT 1
"""
_ROUTE_SQL = f"""
SELECT caller.id, caller.public_id, {_CALLEE_SQL}, {_CONVERSATION_SQL}, {_SERVICE_SQL}
{_ROUTE_FROM}{_ROUTE_WHERE}"""

# On PostgreSQL the route also names the service's row version, and the service comes
# back (as one JSON column) only when this process does not hold that version already:
# PostgreSQL no longer formats 42 columns, nor psycopg parses them, on every answer, and it
# is still one read (issue 17). Every UPDATE writes a new version of the row, at a new
# place (ctid), by its transaction (xmin): the pair names one version of one row (a place
# is reused only once its old version is gone, and then by a later transaction), even for
# two updates in one transaction. So any change to a service, through the ORM, .update()
# or SQL, is seen by the very next route read.
_SERVICE_VERSION = "(service.xmin::text || '/' || service.ctid::text)"
_VERSIONED_ROUTE_SQL = f"""
SELECT caller.id, caller.public_id, {_CALLEE_SQL}, {_CONVERSATION_SQL}, {_SERVICE_VERSION},
    CASE WHEN strpos(%s, ';' || {_SERVICE_VERSION} || ';') > 0 THEN NULL ELSE row_to_json(service)::text END
{_ROUTE_FROM}{_ROUTE_WHERE}"""
_SERVICE_VERSIONS_KEPT = 256
# Service id -> (row version, its attributes as the ORM loads them); and row version -> service id.
_service_rows: dict[Any, tuple[str, dict[str, Any]]] = {}
_service_versions: dict[str, Any] = {}
# How a JSON value of row_to_json() becomes the value psycopg would have given for the column.
_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "DateTimeField": datetime.fromisoformat,
    "DateField": date.fromisoformat,
    "DecimalField": lambda value: Decimal(str(value)),
    "UUIDField": UUID,
}
_AS_JSON = {
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "EmailField", "IntegerField",
    "PositiveBigIntegerField", "PositiveIntegerField", "PositiveSmallIntegerField", "SlugField", "SmallIntegerField",
    "TextField", "URLField",
}  # fmt: skip
_SERVICE_FROM_JSON = [(f.column, _FROM_JSON.get(f.get_internal_type())) for f in _SERVICE_FIELDS]
_unreadable = [f.name for f in _SERVICE_FIELDS if f.get_internal_type() not in _FROM_JSON.keys() | _AS_JSON]
if _unreadable:
    raise TypeError(f"teach proxy.selectors._FROM_JSON to read these Service fields: {_unreadable}")


@functools.cache
def _held_versions() -> str:
    """The versions this process holds, as the route read's parameter: ``;v1;v2;``. (A text:
    psycopg adapts it at once, where a list has its items inspected on every execute.)"""
    return ";" + "".join(f"{version};" for version in _service_versions)


def _service_from_json(text: str) -> tuple:
    data = json.loads(text)
    raw = tuple(
        parse(data[column]) if parse is not None and data[column] is not None else data[column]
        for column, parse in _SERVICE_FROM_JSON
    )
    return _converted(Service, _SERVICE_FIELDS, raw)


def _fetch_row(sql: str, params: list[str], db: BaseDatabaseWrapper | None = None) -> tuple | None:
    """The first row of ``sql``: by the PostgreSQL backend's lean read (config/postgres:
    one libpq call, binary results), else by a cursor (SQLite; the same values).

    ``db``: the default database's connection, when the caller holds it already (each
    look-up through ``django.db.connection`` goes through asgiref's context-local storage)."""
    db = db if db is not None else connections[DEFAULT_DB_ALIAS]
    fetch_row = getattr(db, "fetch_row", None)
    if fetch_row is not None:
        return fetch_row(sql, params)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


# Where the route row's service columns begin (after the caller's ids, the callee, the conversation).
_ROUTE_SERVICE_AT = 2 + len(_CALLEE_FIELDS) + len(_CONVERSATION_FIELDS)


def _open_route_row(
    caller: str, proxy_number: str, versioned_sql: str = _VERSIONED_ROUTE_SQL, db: BaseDatabaseWrapper | None = None
) -> tuple[tuple | None, Service | None]:
    """The route row (service columns left out) and the route's service, in one read.

    ``versioned_sql``: on PostgreSQL, the statement that reads it (the benchmarks pass
    another of the same columns and parameters, bench/reads.py)."""
    at = _ROUTE_SERVICE_AT
    db = db if db is not None else connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        row = _fetch_row(_ROUTE_SQL, [caller, proxy_number], db)
        return (row[:at], _instance(Service, _SERVICE_FIELDS, row[at:])) if row is not None else (None, None)
    row = _fetch_row(versioned_sql, [_held_versions(), caller, proxy_number], db)
    if row is None:
        return None, None
    version, service_json = row[at], row[at + 1]
    attrs = None
    if service_json is None:
        held = _service_rows.get(_service_versions.get(version))
        if held is not None and held[0] == version:
            attrs = held[1]
        else:
            # Dropped by another thread since the read was asked (threaded servers): ask again
            # for the whole service. Never with one thread per process, as under gunicorn sync.
            row = _fetch_row(versioned_sql, ["", caller, proxy_number], db)
            if row is None:
                return None, None
            version, service_json = row[at], row[at + 1]
    if attrs is None:
        attrs = _service_kept(version, service_json)
    # Each answer gets an instance of its own, filled from the attributes held for the version.
    return row[:at], _instance_from(Service, attrs)


def _service_kept(version: str, service_json: str) -> dict[str, Any]:
    """The service's attributes from its JSON (as the ORM loads them), now held by this
    process as that row version."""
    values = _service_from_json(service_json)
    names, _ = _reader(Service, _SERVICE_FIELDS)
    attrs = dict(zip(names, values, strict=True))
    if len(_service_rows) >= _SERVICE_VERSIONS_KEPT:
        _service_rows.clear()
        _service_versions.clear()
    service_id = values[0]
    stale = _service_rows.get(service_id)
    if stale is not None:
        _service_versions.pop(stale[0], None)
    _service_rows[service_id] = (version, attrs)
    _service_versions[version] = service_id
    _held_versions.cache_clear()
    return attrs


# The dialled number's owner, whether it has open PIN conversations, and (only when it
# has none: CASE evaluates lazily) whether the caller's pair on it is cooling down; the
# unique index on open PINs and participant_pair_cooling answer the two probes.
_NUMBER_SQL = f"""
SELECT v.service_id,
    EXISTS (
        SELECT 1 FROM proxy_participant AS p WHERE p.proxy_number = v.number AND p.active AND p.pin IS NOT NULL
    ),
    CASE WHEN EXISTS (
        SELECT 1 FROM proxy_participant AS p WHERE p.proxy_number = v.number AND p.active AND p.pin IS NOT NULL
    ) THEN FALSE ELSE EXISTS (
        SELECT 1 FROM proxy_participant AS c
        WHERE c.real_number = %s AND c.proxy_number = v.number AND c.routes_by_pair AND NOT c.active
            AND c.cooldown_until > %s
    ) END,
    {_SERVICE_SQL}
FROM numbers_virtualnumber AS v LEFT JOIN proxy_service AS service ON service.id = v.service_id
WHERE v.number = %s
"""  # noqa: S608 (column lists come from model metadata)


_PARTICIPANT_CONVERSATION = Participant._meta.get_field("conversation")
_PARTICIPANT_SERVICE = Participant._meta.get_field("service")


class OpenRoute(NamedTuple):
    """The caller's open pair: the other participant (its conversation and service cached
    on it), the same conversation and service, the caller's participant id and opaque id."""

    callee: Participant
    conversation: Conversation
    service: Service
    caller_id: int
    caller_public_id: str | None


def _open_route(
    *,
    caller: str,
    proxy_number: str,
    versioned_sql: str = _VERSIONED_ROUTE_SQL,
    db: BaseDatabaseWrapper | None = None,
) -> OpenRoute | None:
    """The caller's open pair with everything the answer needs of it, in one read; None if
    the caller holds no open pair on the number."""
    row, service = _open_route_row(caller, proxy_number, versioned_sql, db)
    if row is None or service is None:
        return None
    a = 2 + len(_CALLEE_FIELDS)
    callee = _instance(Participant, _CALLEE_FIELDS, row[2:a])
    # Related rows cached as select_related() leaves them (their ids came with the row):
    # assigning through the descriptors cost more than building the instances.
    conversation = _instance(Conversation, _CONVERSATION_FIELDS, row[a:_ROUTE_SERVICE_AT])
    _PARTICIPANT_CONVERSATION.set_cached_value(callee, conversation)
    _PARTICIPANT_SERVICE.set_cached_value(callee, service)
    public_id = row[1]
    # SQLite keeps a UUID as 32 hex digits: shown the way the API shows it.
    if public_id is not None and not isinstance(public_id, UUID):
        public_id = UUID(str(public_id))
    return OpenRoute(callee, conversation, service, row[0], str(public_id) if public_id is not None else None)


_WHOLE_CONVERSATION_FIELDS, _WHOLE_CONVERSATION_SQL = _select_list(Conversation, "conversation")
_CONVERSATION_BY_ID_SQL = f"""
SELECT {_WHOLE_CONVERSATION_SQL} FROM proxy_conversation AS conversation WHERE conversation.id = %s
"""  # noqa: S608 (column lists come from model metadata)


def conversation_whole(*, conversation_id: Any) -> Conversation | None:
    """A conversation with every field, by id: one fixed statement (a hook waits on it)."""
    key = Conversation._meta.pk.get_db_prep_value(conversation_id, connection)  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(_CONVERSATION_BY_ID_SQL, [key])
        row = cursor.fetchone()
    return None if row is None else _instance(Conversation, _WHOLE_CONVERSATION_FIELDS, row)


# --- Messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextRoute:
    """Where a text to a proxy number goes.

    ``sender`` is the participant of an open, unexpired conversation who holds
    (sender's number, proxy number), with ``conversation`` and ``service`` attached;
    ``recipient`` the other participant. No sender: the text is out of session, and
    ``service`` owns the number (None when no pool holds it).
    ``recipient_opted_out``: the recipient texted STOP to this service.
    ``recent_relays``: texts relayed in the conversation since the time asked.
    """

    service: Service | None
    sender: Participant | None = None
    recipient: Participant | None = None
    conversation: Conversation | None = None
    recipient_opted_out: bool = False
    recent_relays: int = 0


_SENDER_FIELDS, _SENDER_SQL = _select_list(Participant, "sender")
_RECIPIENT_FIELDS, _RECIPIENT_SQL = _select_list(Participant, "recipient")
# The sender's open pair through the partial unique index, the other participant, the
# conversation, its service, the recipient's opt-out and the conversation's recent
# relays (for its cap): everything a relay decides on, in one read. A participant the
# caller ID does not route (PIN mode always) has no pair: as for calls, the number alone
# cannot tell which of their conversations a text is for.
_TEXT_ROUTE_SQL = f"""
SELECT {_SENDER_SQL}, {_RECIPIENT_SQL}, {_WHOLE_CONVERSATION_SQL}, {_SERVICE_SQL},
    EXISTS (
        SELECT 1 FROM proxy_messagecontact AS contact
        WHERE contact.service_id = service.id AND contact.real_number = recipient.real_number AND contact.opted_out
    ),
    (
        SELECT count(*) FROM proxy_message AS message
        WHERE message.conversation_id = conversation.id AND message.kind = 'relay' AND message.status <> 'held'
        AND message.created_at >= %s
    )
FROM proxy_participant AS sender
JOIN proxy_participant AS recipient ON recipient.conversation_id = sender.conversation_id AND recipient.id <> sender.id
JOIN proxy_conversation AS conversation ON conversation.id = sender.conversation_id
JOIN proxy_service AS service ON service.id = conversation.service_id
WHERE sender.real_number = %s AND sender.proxy_number = %s AND sender.active AND sender.routes_by_pair
    AND recipient.active
LIMIT 1
"""  # noqa: S608 (column lists come from model metadata)


# --- PIN calls ------------------------------------------------------------------------------------

_OWNER_FIELDS, _OWNER_SQL = _select_list(Participant, "owner")
_PIN_CALLEE_FIELDS, _PIN_CALLEE_SQL = _select_list(Participant, "callee")
# Whose PIN it is on the number (open first, else the latest still cooling), with its
# conversation, service and open counterpart: one read, through participant_pin_recent.
_PIN_SQL = f"""
SELECT {_OWNER_SQL}, {_CONVERSATION_SQL}, {_SERVICE_SQL}, {_PIN_CALLEE_SQL}
FROM proxy_participant AS owner
JOIN proxy_conversation AS conversation ON conversation.id = owner.conversation_id
JOIN proxy_service AS service ON service.id = conversation.service_id
LEFT JOIN proxy_participant AS callee
    ON callee.conversation_id = owner.conversation_id AND callee.id <> owner.id AND callee.active
WHERE owner.proxy_number = %s AND owner.pin = %s AND (owner.active OR owner.cooldown_until > %s)
ORDER BY owner.active DESC, owner.created_at DESC
LIMIT 1
"""  # noqa: S608 (column lists come from model metadata)


def route_for_text(
    *, sender: str | None, proxy_number: str | None, relays_since: datetime, now: datetime | None = None
) -> TextRoute:
    """Map (sender's real number, proxy number texted) to the other participant.

    A conversation past its expiry routes nothing, as for calls, before any sweep
    writes it down.
    """
    if not proxy_number:
        return TextRoute(service=None)
    now = now or timezone.now()
    if sender:
        with connection.cursor() as cursor:
            cursor.execute(
                _TEXT_ROUTE_SQL, [connection.ops.adapt_datetimefield_value(relays_since), sender, proxy_number]
            )
            row = cursor.fetchone()
        if row is not None:
            a = len(_SENDER_FIELDS)
            b = a + len(_RECIPIENT_FIELDS)
            c = b + len(_WHOLE_CONVERSATION_FIELDS)
            d = c + len(_SERVICE_FIELDS)
            conversation = _instance(Conversation, _WHOLE_CONVERSATION_FIELDS, row[b:c])
            service = _instance(Service, _SERVICE_FIELDS, row[c:d])
            if conversation.expires_at > now:
                conversation.service = service
                participants = []
                for fields, values in ((_SENDER_FIELDS, row[:a]), (_RECIPIENT_FIELDS, row[a:b])):
                    participant = _instance(Participant, fields, values)
                    participant.conversation = conversation
                    participant.service = service
                    participants.append(participant)
                return TextRoute(
                    service=service,
                    sender=participants[0],
                    recipient=participants[1],
                    conversation=conversation,
                    recipient_opted_out=bool(row[d]),
                    recent_relays=int(row[d + 1]),
                )
            return TextRoute(service=service)
    return TextRoute(service=service_of_number(number=proxy_number))


def conversation_last_held(*, service: Service, real_number: str, proxy_number: str) -> Participant | None:
    """The participant row of the service's latest conversation in which ``real_number`` held
    ``proxy_number``, with its conversation; None when there is none."""
    return (
        Participant.objects.filter(service=service, real_number=real_number, proxy_number__number=proxy_number)
        .select_related("conversation")
        .order_by("-created_at", "-pk")
        .first()
    )


def number_opted_out(*, service_id: int, real_number: str) -> bool:
    """Whether ``real_number`` texted STOP to the service (and not START since)."""
    return MessageContact.objects.filter(service_id=service_id, real_number=real_number, opted_out=True).exists()


def messages_for_conversation(*, conversation: Conversation) -> QuerySet[Message]:
    """The texts the API lists for a conversation, newest first: relayed ones and the service's own."""
    return (
        Message.objects.filter(conversation=conversation, kind__in=[Message.Kind.RELAY, Message.Kind.PLATFORM])
        # Participants are shown by their public ids: one join, not a query per text.
        .select_related("from_participant", "to_participant")
        .order_by("-created_at", "-pk")
    )


_MESSAGE_FIELDS, _MESSAGE_SQL = _select_list(Message, "message")
# A text to send, locked for its sender, with its service and whether its recipient
# opted out: one read for the worker (ORM compilation cost more than the query).
_MESSAGE_TO_SEND_SQL = f"""
SELECT {_MESSAGE_SQL}, {_SERVICE_SQL},
    EXISTS (
        SELECT 1 FROM proxy_messagecontact AS contact
        WHERE contact.service_id = message.service_id AND contact.real_number = message.to_number AND contact.opted_out
    )
FROM proxy_message AS message LEFT JOIN proxy_service AS service ON service.id = message.service_id
"""  # noqa: S608 (column lists come from model metadata)
_BY_ID = "WHERE message.id = %s"
# Through the partial index of queued texts by due time.
_NEXT_DUE = "WHERE message.status = 'queued' AND message.next_attempt_at <= %s ORDER BY message.next_attempt_at LIMIT 1"


def message_to_send(*, message_id: int | None = None, due_by: datetime | None = None) -> tuple[Message, bool] | None:
    """The text ``message_id`` (or else the queued text due first, by ``due_by``) with its
    service, and whether its recipient opted out; None when there is none, or (PostgreSQL)
    when another worker holds it. Call it in a transaction: the row stays locked until it ends.
    """
    params: list[Any]
    if message_id is not None:
        sql, params = f"{_MESSAGE_TO_SEND_SQL} {_BY_ID}", [message_id]
    else:
        sql, params = f"{_MESSAGE_TO_SEND_SQL} {_NEXT_DUE}", [connection.ops.adapt_datetimefield_value(due_by)]
    if connection.vendor == "postgresql":
        sql += " FOR UPDATE OF message SKIP LOCKED"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    a = len(_MESSAGE_FIELDS)
    message = _instance(Message, _MESSAGE_FIELDS, row[:a])
    message.service = _instance(Service, _SERVICE_FIELDS, row[a:-1]) if message.service_id is not None else None
    return message, bool(row[-1])


def pin_holder(*, proxy_number: str, pin: str, now: datetime) -> tuple[Participant, Participant | None] | None:
    """The participant holding ``pin`` on ``proxy_number``, open or cooling down, with its
    conversation and service attached, and its open counterpart (None when there is none)."""
    with connection.cursor() as cursor:
        cursor.execute(_PIN_SQL, [proxy_number, pin, connection.ops.adapt_datetimefield_value(now)])
        row = cursor.fetchone()
    if row is None:
        return None
    a = len(_OWNER_FIELDS)
    b = a + len(_CONVERSATION_FIELDS)
    c = b + len(_SERVICE_FIELDS)
    owner = _instance(Participant, _OWNER_FIELDS, row[:a])
    owner.conversation = _instance(Conversation, _CONVERSATION_FIELDS, row[a:b])
    owner.conversation.service = owner.service = _instance(Service, _SERVICE_FIELDS, row[b:c])
    counterpart = None
    if row[c] is not None:  # the callee's id: NULL when the LEFT JOIN found nobody
        counterpart = _instance(Participant, _PIN_CALLEE_FIELDS, row[c:])
    return owner, counterpart


_SERVICE_OF_NUMBER_SQL = f"""
SELECT {_SERVICE_SQL}
FROM numbers_virtualnumber AS v JOIN proxy_service AS service ON service.id = v.service_id
WHERE v.number = %s
"""  # noqa: S608 (column lists come from model metadata)


def service_of_number(*, number: str) -> Service | None:
    """The service whose pool holds ``number``; None for a number in no pool, or no number of ours."""
    with connection.cursor() as cursor:
        cursor.execute(_SERVICE_OF_NUMBER_SQL, [number])
        row = cursor.fetchone()
    return None if row is None else _instance(Service, _SERVICE_FIELDS, row)


_KEY_FIELDS, _KEY_SQL = _select_list(ApiKey, "api_key", ["id", "service_id", "last_used_at"])
# Every API request starts here: one fixed statement, the key's service alongside.
_API_KEY_SQL = f"""
SELECT {_KEY_SQL}, {_SERVICE_SQL}
FROM proxy_apikey AS api_key JOIN proxy_service AS service ON service.id = api_key.service_id
WHERE api_key.key_hash = %s AND api_key.revoked_at IS NULL AND service.is_active
"""  # noqa: S608 (column lists come from model metadata)


def api_key_for_hash(*, key_hash: str) -> ApiKey | None:
    """The live key with this hash, its service attached; None when unknown, revoked or its service is off."""
    with connection.cursor() as cursor:
        cursor.execute(_API_KEY_SQL, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key = _instance(ApiKey, _KEY_FIELDS, row[: len(_KEY_FIELDS)])
    api_key.service = _instance(Service, _SERVICE_FIELDS, row[len(_KEY_FIELDS) :])
    return api_key


def _converted(model: type[Model], fields: list[Field], values: tuple) -> tuple:
    """Raw column values as the ORM would load them (dates, UUIDs on SQLite)."""
    _, conversions = _reader(model, fields)
    if not conversions:
        return tuple(values)
    converted = list(values)
    for i, expression, converters in conversions:
        for converter in converters:
            converted[i] = converter(converted[i], expression, connection)
    return tuple(converted)


def _instance(model: type[Model], fields: list[Field], values: tuple, *, converted: bool = False) -> Any:
    """A model instance from raw column values, converted as the ORM would (dates, UUIDs on SQLite).

    ``fields``: one of this module's column lists (they live as long as the process);
    ``converted``: ``values`` came from ``_converted`` already.
    """
    names, conversions = _reader(model, fields)
    if conversions and not converted:
        values = _converted(model, fields, values)
    # This module reads through django.db.connection: the default database, always.
    if model.from_db.__func__ is not Model.from_db.__func__ or _init_listened(model):  # type: ignore[attr-defined]
        return model.from_db(DEFAULT_DB_ALIAS, names, values)
    # What from_db() leaves behind, without __init__'s walk over every field with its
    # signals: a quarter of the route read's CPU (issue 17). Only where nothing listens
    # for those signals and the model keeps Django's from_db().
    instance = model.__new__(model)
    instance.__dict__.update(zip(names, values, strict=True))
    state = instance._state = ModelState()
    state.adding = False
    state.db = DEFAULT_DB_ALIAS
    return instance


def _instance_from(model: type[Model], attrs: dict[str, Any]) -> Any:
    """A model instance of its own from attributes already converted (every concrete field's
    ``attname``, in the order of ``model._meta.concrete_fields``), as ``_instance`` makes it."""
    if model.from_db.__func__ is not Model.from_db.__func__ or _init_listened(model):  # type: ignore[attr-defined]
        return model.from_db(DEFAULT_DB_ALIAS, list(attrs), tuple(attrs.values()))
    instance = model.__new__(model)
    instance.__dict__.update(attrs)
    state = instance._state = ModelState()
    state.adding = False
    state.db = DEFAULT_DB_ALIAS
    return instance


def _init_listened(model: type[Model]) -> bool:
    # Usually nothing listens at all: two list checks, not four receiver look-ups per answer.
    if not signals.pre_init.receivers and not signals.post_init.receivers:
        return False
    return signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model)


# Per column list, by identity: looking it up by the fields themselves hashed every field
# on every answer (a Python call each), which cost more than converting the row.
_READERS: dict[int, tuple[list[Field], tuple[list[str], list[tuple[int, Col, list]]]]] = {}


def _reader(model: type[Model], fields: list[Field]) -> tuple[list[str], list[tuple[int, Col, list]]]:
    """The attribute names of ``fields`` and the converters of those columns that have any."""
    held = _READERS.get(id(fields))
    if held is None or held[0] is not fields:
        # One database per process: the backend's converters are the same for every row.
        conversions = []
        for i, field in enumerate(fields):
            # get_col(): a foreign key reads as the field it points to (a UUID on SQLite).
            expression = field.get_col(model._meta.db_table)
            converters = connection.ops.get_db_converters(expression) + field.get_db_converters(connection)
            if converters:
                conversions.append((i, expression, converters))
        held = _READERS[id(fields)] = (fields, ([f.attname for f in fields], conversions))
    return held[1]


# --- Allocation -----------------------------------------------------------------------------------


# Three reads in one round trip; as ORM queries they cost more to build than to run.
# 'held': both people's open and cooling pairs that route by their number, each with the
# other person of its conversation; 'sticky': the numbers of their latest conversation
# together; 'pool': the service's usable numbers in the given countries.
_HELD_SQL = """
SELECT 'held', p.real_number, p.proxy_number, p.active, p.conversation_id, c.expires_at <= %s,
    COALESCE((
        SELECT o.real_number FROM proxy_participant AS o
        WHERE o.conversation_id = p.conversation_id AND o.real_number <> p.real_number LIMIT 1
    ), '')
FROM proxy_participant AS p JOIN proxy_conversation AS c ON c.id = p.conversation_id
WHERE p.real_number IN (%s, %s) AND (p.active OR p.cooldown_until > %s) AND p.routes_by_pair
UNION ALL
"""
_ALLOCATION_SQL = """
SELECT 'sticky', p.real_number, p.proxy_number, NULL, NULL, NULL, NULL
FROM proxy_participant AS p
WHERE p.conversation_id = (
    SELECT a.conversation_id FROM proxy_participant AS a
    JOIN proxy_participant AS b ON b.conversation_id = a.conversation_id
    WHERE a.service_id = %s AND a.real_number = %s AND b.real_number = %s
    ORDER BY a.created_at DESC LIMIT 1
)
UNION ALL
SELECT 'pool', v.number, v.country, NULL, NULL, NULL, NULL
FROM numbers_virtualnumber AS v
WHERE v.service_id = %s AND v.state = %s AND v.voice AND v.country IN ({countries})
"""


def allocation_view(
    *, service: Service, reals: tuple[str, str], countries: Collection[str], now: datetime, held: bool = True
) -> AllocationView:
    """What choosing proxy numbers for the two people ``reals`` needs to know, in one read.

    ``held=False`` leaves out what the two hold (PIN mode ``always``: their numbers do
    not constrain the choice), which for a busy person is most of the read.
    """
    a, b = reals
    at = connection.ops.adapt_datetimefield_value(now)
    countries = sorted(countries)
    sql = _ALLOCATION_SQL.format(countries=", ".join(["%s"] * len(countries)))
    params: list[Any] = [service.pk, a, b, service.pk, VirtualNumber.State.ACTIVE.value, *countries]
    if held:
        sql, params = _HELD_SQL + sql, [at, a, b, at, *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return allocation_view_from_rows(rows)
