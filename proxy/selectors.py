"""Reads: tenant-scoped look-ups and the routing decision for an inbound call."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.db import connection
from django.db.models import Field, Model, Prefetch, Q, QuerySet
from django.db.models.expressions import Col
from django.utils import timezone

from proxy.allocation import AllocationView, allocation_view_from_rows
from proxy.models import ApiKey, Call, Conversation, Notification, Participant, Recording, Service
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
    """A conversation's calls, newest first, with their recordings."""
    return calls_for_conversation(conversation=conversation).prefetch_related("recordings")


def recording_for_service(*, service: Service, recording_uuid: str) -> Recording | None:
    """A recording of one of the service's calls or conversations; None for any other."""
    return (
        Recording.objects.filter(recording_uuid=recording_uuid)
        .filter(Q(conversation__service=service) | Q(call__service=service))
        .first()
    )


def latest_conversation_of_pair(*, service: Service, real_number: str, proxy_number: str) -> Conversation | None:
    """The latest conversation of ``service`` in which ``real_number`` held ``proxy_number``, if any."""
    held = (
        Participant.objects.filter(real_number=real_number, proxy_number__number=proxy_number, service=service)
        .select_related("conversation")
        .order_by("-created_at")
        .first()
    )
    return held.conversation if held is not None else None


def is_pool_number(number: str) -> bool:
    """Whether ``number`` is one of the account's virtual numbers (any service, any state)."""
    return VirtualNumber.objects.filter(number=number).exists()


@dataclass(frozen=True)
class Route:
    """What to do with an inbound call.

    ``connect``: ring ``callee`` (caller ID ``callee.proxy_number_id``); ``caller_id`` is
    the caller's own participant;
    ``ended``: the pair belonged to a conversation that is over;
    ``unknown``: nothing matches (``service`` is the owner of the dialled number, if any).
    ``service`` is read whole with the route: whether it has hooks costs no query.
    """

    kind: Literal["connect", "ended", "unknown"]
    service: Service | None = None
    conversation: Conversation | None = None
    callee: Participant | None = None
    caller_id: int | None = None


def route_for_call(*, caller: str | None, proxy_number: str | None, now: datetime | None = None) -> Route:
    """Reverse-map (caller's real number, number dialled) to the other participant.

    The connect case is one indexed read: the partial unique index on open
    (real_number, proxy_number) finds the caller's row, joined to the callee's.
    """
    if not proxy_number:
        return Route(kind="unknown")
    now = now or timezone.now()
    if caller:
        found, caller_id = _open_route(caller=caller, proxy_number=proxy_number)
        if found is not None:
            if found.conversation.expires_at <= now:
                # Expired before any sweep wrote it down: ended during the cooldown, then unknown.
                cooling_until = found.conversation.expires_at + timedelta(seconds=found.service.cooldown)
                kind: Literal["ended", "unknown"] = "ended" if now < cooling_until else "unknown"
                return Route(kind=kind, service=found.service, conversation=found.conversation)
            return Route(
                kind="connect",
                service=found.service,
                conversation=found.conversation,
                callee=found,
                caller_id=caller_id,
            )
        cooling = (
            Participant.objects.filter(
                real_number=caller, proxy_number__number=proxy_number, active=False, cooldown_until__gt=now
            )
            .select_related("service")
            .order_by("-created_at")
            .first()
        )
        if cooling is not None:
            return Route(kind="ended", service=cooling.service, conversation=None)
    owner = VirtualNumber.objects.select_related("service").filter(number=proxy_number).first()
    return Route(kind="unknown", service=owner.service if owner else None)


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
# The caller's row through the partial unique index on open (real_number, proxy_number),
# the other participant of its conversation, the conversation and its service: one read,
# and no ORM query compilation on the hot path (that cost more than the read itself).
_ROUTE_SQL = f"""
SELECT caller.id, {_CALLEE_SQL}, {_CONVERSATION_SQL}, {_SERVICE_SQL}
FROM proxy_participant AS caller
JOIN proxy_participant AS callee ON callee.conversation_id = caller.conversation_id AND callee.id <> caller.id
JOIN proxy_conversation AS conversation ON conversation.id = caller.conversation_id
JOIN proxy_service AS service ON service.id = conversation.service_id
WHERE caller.real_number = %s AND caller.proxy_number = %s AND caller.active AND callee.active
LIMIT 1
"""  # noqa: S608 (column lists come from model metadata)


def _open_route(*, caller: str, proxy_number: str) -> tuple[Participant | None, int | None]:
    """The other participant of the caller's open pair, with its conversation and service,
    and the caller's own participant id."""
    with connection.cursor() as cursor:
        cursor.execute(_ROUTE_SQL, [caller, proxy_number])
        row = cursor.fetchone()
    if row is None:
        return None, None
    a = 1 + len(_CALLEE_FIELDS)
    b = a + len(_CONVERSATION_FIELDS)
    callee = _instance(Participant, _CALLEE_FIELDS, row[1:a])
    callee.conversation = _instance(Conversation, _CONVERSATION_FIELDS, row[a:b])
    callee.service = _instance(Service, _SERVICE_FIELDS, row[b:])
    return callee, row[0]


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


def _instance(model: type[Model], fields: list[Field], values: tuple) -> Any:
    """A model instance from raw column values, converted as the ORM would (dates, UUIDs on SQLite).

    ``fields``: one of this module's column lists (they live as long as the process).
    """
    names, conversions = _reader(model, fields)
    if conversions:
        converted = list(values)
        for i, expression, converters in conversions:
            for converter in converters:
                converted[i] = converter(converted[i], expression, connection)
        values = tuple(converted)
    return model.from_db(connection.alias, names, values)


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
            expression = Col(model._meta.db_table, field)
            converters = connection.ops.get_db_converters(expression) + field.get_db_converters(connection)
            if converters:
                conversions.append((i, expression, converters))
        held = _READERS[id(fields)] = (fields, ([f.attname for f in fields], conversions))
    return held[1]


# --- Allocation -----------------------------------------------------------------------------------


# Three reads in one round trip; as ORM queries they cost more to build than to run.
# 'held': both people's open and cooling pairs, each with the other person of its
# conversation; 'sticky': the numbers of their latest conversation together; 'pool':
# the service's usable numbers in the given countries.
_ALLOCATION_SQL = """
SELECT 'held', p.real_number, p.proxy_number, p.active, p.conversation_id, c.expires_at <= %s,
    COALESCE((
        SELECT o.real_number FROM proxy_participant AS o
        WHERE o.conversation_id = p.conversation_id AND o.real_number <> p.real_number LIMIT 1
    ), '')
FROM proxy_participant AS p JOIN proxy_conversation AS c ON c.id = p.conversation_id
WHERE p.real_number IN (%s, %s) AND (p.active OR p.cooldown_until > %s)
UNION ALL
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
    *, service: Service, reals: tuple[str, str], countries: Collection[str], now: datetime
) -> AllocationView:
    """What choosing proxy numbers for the two people ``reals`` needs to know, in one read."""
    a, b = reals
    at = connection.ops.adapt_datetimefield_value(now)
    countries = sorted(countries)
    sql = _ALLOCATION_SQL.format(countries=", ".join(["%s"] * len(countries)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [at, a, b, at, service.pk, a, b, service.pk, VirtualNumber.State.ACTIVE.value, *countries])
        rows = cursor.fetchall()
    return allocation_view_from_rows(rows)
