"""Writes: opening, changing and ending conversations, with proxy-number allocation."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack

from django.db import IntegrityError, connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, OuterRef, Subquery, Value
from django.utils import timezone

from proxy import selectors, side_effects
from proxy.allocation import choose_proxy_number, holdings_of, pool_for_country
from proxy.errors import ConversationEnded, PoolExhausted
from proxy.models import Conversation, Notification, Participant, Service, prefetched
from proxy.notifications import notifications_fail_for_invalid_numbers
from proxy.participants import ParticipantInput, Person, participants_normalize
from proxy.phone import mask, region_of
from proxy.pins import NoFreePin, pins_choose
from virtual_numbers.models import PoolExhaustion, VirtualNumber

logger = logging.getLogger(__name__)

ALLOCATION_ATTEMPTS = 3


class _NoFreeNumber(Exception):
    def __init__(self, detail: str, country: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.country = country


class _PoolChanged(Exception):
    """A chosen number left the pool while this allocation ran."""


class OpenOptions(TypedDict, total=False):
    """``conversation_open``'s options, which ``conversation_create`` passes on."""

    ttl: int | None
    external_id: str
    record: bool
    notify: bool
    metadata: dict[str, Any] | None
    call_time_limit: int | None
    ring_timeout: int | None
    keep_numbers: dict[str, str] | None
    now: datetime | None
    on_created: Callable[[Conversation], None] | None


def conversation_create(
    *, service: Service, participants: list[ParticipantInput], **options: Unpack[OpenOptions]
) -> Conversation:
    """Open a conversation between two people as given (numbers in any form people type).

    Raises InvalidInput for bad input; otherwise as ``conversation_open``.
    """
    people = participants_normalize(participants, default_country=service.default_country)
    return conversation_open(service=service, people=people, **options)


def conversation_open(
    *,
    service: Service,
    people: list[Person],
    ttl: int | None = None,
    external_id: str = "",
    record: bool = False,
    notify: bool = True,
    metadata: dict[str, Any] | None = None,
    call_time_limit: int | None = None,
    ring_timeout: int | None = None,
    keep_numbers: dict[str, str] | None = None,
    now: datetime | None = None,
    on_created: Callable[[Conversation], None] | None = None,
) -> Conversation:
    """Open a conversation between two validated people and give each a proxy number.

    ``people``: as ``proxy.participants.participants_normalize`` returns them (E.164 digits, two different
    numbers, country of the number else the hint). ``call_time_limit`` and ``ring_timeout``
    default to the service's (``call_time_limit``, ``connect_timeout``) and are kept on the
    conversation. ``keep_numbers`` maps a real number to a proxy number that person keeps
    when it is free for them (a caller opening a conversation on the number they dialled),
    before any other choice. The conversation comes back with its
    participants and their SMS rows attached, so it can be shown without reading it
    back. ``on_created`` runs inside the creating transaction, once all of that is
    written (the API stores its Idempotency-Key response there, in the same commit as
    the conversation).

    Raises PoolExhausted (409) when a participant has no free number; nothing is
    written then but the exhaustion record.
    """
    if service.recording_policy == Service.RecordingPolicy.NEVER:
        record = False
    elif service.recording_policy == Service.RecordingPolicy.ALWAYS:
        record = True
    for attempt in range(1, ALLOCATION_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _conversation_create_locked(
                    service=service,
                    people=people,
                    ttl=ttl or service.default_ttl,
                    external_id=external_id,
                    record=record,
                    notify=notify,
                    metadata=metadata or {},
                    call_time_limit=call_time_limit or service.call_time_limit,
                    ring_timeout=ring_timeout or service.connect_timeout,
                    keep_numbers=keep_numbers or {},
                    now=now or timezone.now(),
                    on_created=on_created,
                )
        except _NoFreeNumber as exc:
            PoolExhaustion.objects.create(service=service, country=exc.country)
            # WARNING: the signal to buy numbers (docs/operations.md, "Alerts").
            logger.warning(
                "pool exhausted for service=%s country=%s: answered 409",
                service.slug,
                exc.country,
                extra={"service": service.slug, "country": exc.country, "event": "pool_exhausted"},
            )
            raise PoolExhausted(exc.detail) from None
        except (IntegrityError, _PoolChanged):
            # A unique index refused a pair (a backstop: advisory locks and SQLite's single
            # writer prevent it) or a PIN (two creations drew the same one on a number at
            # once), or a chosen number left the pool: choose again.
            logger.warning("allocation race, attempt %s", attempt)
            if attempt == ALLOCATION_ATTEMPTS:
                logger.warning(
                    "pool exhausted for service=%s: allocation raced %s times; answered 409",
                    service.slug,
                    attempt,
                    extra={"service": service.slug, "event": "pool_exhausted"},
                )
                raise PoolExhausted("Proxy numbers are being allocated concurrently; retry.") from None
    raise AssertionError("unreachable")


def _conversation_create_locked(
    *,
    service: Service,
    people: list[Person],
    ttl: int,
    external_id: str,
    record: bool,
    notify: bool,
    metadata: dict[str, Any],
    call_time_limit: int,
    ring_timeout: int,
    keep_numbers: dict[str, str],
    now: datetime,
    on_created: Callable[[Conversation], None] | None,
) -> Conversation:
    reals = [p["number"] for p in people]
    # In PIN mode "always" the caller ID routes nothing: a person may hold one number in
    # any number of conversations, so neither their holdings nor a lock on them matter.
    by_pair = service.pin_mode != Service.PinMode.ALWAYS
    if by_pair:
        _lock_real_numbers(reals)
    # Only the countries a participant can be served from: their own, else the default;
    # and the country of a number someone keeps.
    countries = {p["country"] for p in people} | {service.default_country}
    countries |= {region_of(number) or service.default_country for number in keep_numbers.values()}
    view = selectors.allocation_view(
        service=service, reals=(reals[0], reals[1]), countries=countries, now=now, held=by_pair
    )
    expired = {h.conversation_id for h in view.held if h.active and h.expired}
    if expired:
        # Rare: an expiry no sweep wrote down yet. Its pairs now cool from expires_at.
        conversations_end(ids=list(expired), status=Conversation.Status.EXPIRED, reason="expired", now=now)
        view = selectors.allocation_view(
            service=service, reals=(reals[0], reals[1]), countries=countries, now=now, held=by_pair
        )
    holdings = holdings_of(reals=reals, held=view.held)
    chosen: list[str] = []
    for person, other in ((people[0], people[1]), (people[1], people[0])):
        candidates = pool_for_country(view.pool, country=person["country"], default_country=service.default_country)
        keep = keep_numbers.get(person["number"])
        if keep and all(c.number != keep for c in candidates):
            # A number of the pool in another country is still the one they dialled.
            candidates += [n for n in view.pool if n.number == keep]
        number = choose_proxy_number(
            candidates=candidates,
            holdings=holdings[person["number"]],
            counterpart=other["number"],
            sticky=view.sticky.get(person["number"]),
            keep=keep,
        )
        if number is None:
            country = candidates[0].country if candidates else person["country"]
            raise _NoFreeNumber(
                f"No proxy number is free for participant {len(chosen) + 1} in country {country}.", country
            )
        chosen.append(number)
    pins = _pins_for(service=service, chosen=chosen, now=now)

    conversation = Conversation.objects.create(
        service=service,
        external_id=external_id,
        expires_at=now + timedelta(seconds=ttl),
        record=record,
        metadata=metadata,
        call_time_limit=call_time_limit,
        ring_timeout=ring_timeout,
        created_at=now,
    )
    participants = Participant.objects.bulk_create(
        Participant(
            conversation=conversation,
            service=service,
            position=i,
            real_number=person["number"],
            name=person["name"],
            country=person["country"],
            proxy_number_id=chosen[i],
            pin=pins[i],
            routes_by_pair=by_pair,
            created_at=now,
        )
        for i, person in enumerate(people)
    )
    if any(p.pk is None for p in participants):
        # SQLite before 3.35 returns no ids from a bulk insert.
        participants = list(conversation.participants.order_by("position", "pk"))
    # A number released or moved while we chose it. Django's foreign keys are deferred on
    # PostgreSQL, so the participant insert locks nothing yet: take the key-share lock
    # ourselves. A release that has not committed yet then waits for us and sees the
    # number in use; one that committed first shows here, and we choose again.
    if _usable_locked(service=service, chosen=chosen) != len(set(chosen)):
        raise _PoolChanged()
    logger.info(
        "conversation %s opened for service=%s: %s via %s, %s via %s",
        conversation.pk,
        service.slug,
        mask(reals[0]),
        chosen[0],
        mask(reals[1]),
        chosen[1],
    )
    notifications = side_effects.conversation_opened(conversation, notify=notify, participants=participants)
    by_participant: dict[int, list[Notification]] = defaultdict(list)
    for notification in notifications:
        by_participant[notification.participant_id].append(notification)
    for participant in participants:
        prefetched(participant, "notifications", by_participant[participant.pk])
    prefetched(conversation, "participants", participants)
    if on_created is not None:
        on_created(conversation)
    return conversation


def _pins_for(*, service: Service, chosen: list[str], now: datetime) -> list[str | None]:
    """Each participant's PIN on their chosen number; None for all when the service has PINs off."""
    if service.pin_mode == Service.PinMode.OFF:
        return [None] * len(chosen)
    try:
        return list(pins_choose(proxy_numbers=chosen, now=now))
    except NoFreePin as exc:
        number = VirtualNumber.objects.filter(number=exc.proxy_number).values_list("country", flat=True).first()
        raise _NoFreeNumber(str(exc), number or service.default_country) from None


def _usable_locked(*, service: Service, chosen: list[str]) -> int:
    """How many of ``chosen`` are still active in the pool, key-share locked until commit.

    The lock does not block other conversations taking the same numbers; it blocks a
    release or move (``SELECT ... FOR UPDATE`` on the number) until this commits.
    """
    numbers = sorted(set(chosen))
    if connection.vendor != "postgresql":
        return VirtualNumber.objects.filter(
            number__in=numbers, service=service, state=VirtualNumber.State.ACTIVE
        ).count()
    marks = ", ".join(["%s"] * len(numbers))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT number FROM numbers_virtualnumber WHERE number IN ({marks}) AND service_id = %s AND state = %s "  # noqa: S608 (placeholders only)
            # virtual_numbers.services.LOCK_ORDER: every multi-number lock takes this order.
            "ORDER BY country, number FOR KEY SHARE",
            [*numbers, service.pk, VirtualNumber.State.ACTIVE.value],
        )
        return len(cursor.fetchall())


def _lock_real_numbers(reals: Iterable[str]) -> None:
    """Serialise allocations for the same person (PostgreSQL advisory locks).

    SQLite needs none: its IMMEDIATE transactions already admit one writer at a time.
    """
    if connection.vendor != "postgresql":
        return
    keys = sorted(
        int.from_bytes(hashlib.blake2b(r.encode(), digest_size=8).digest(), "big", signed=True) for r in reals
    )
    # One round trip; PostgreSQL takes them left to right, in this sorted order.
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(["pg_advisory_xact_lock(%s)"] * len(keys)), keys)


def conversation_update(
    *,
    conversation: Conversation,
    ttl: int | None = None,
    metadata: dict[str, Any] | None = None,
    close: bool = False,
    now: datetime | None = None,
) -> Conversation:
    """Extend (``ttl`` seconds from now), replace metadata, or close. Ended is final: 409."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status != Conversation.Status.OPEN or locked.expires_at <= now:
            raise ConversationEnded()
        fields = []
        if ttl is not None:
            locked.expires_at = now + timedelta(seconds=ttl)
            fields.append("expires_at")
        if metadata is not None:
            locked.metadata = metadata
            fields.append("metadata")
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
        if close:
            conversations_end(ids=[locked.pk], status=Conversation.Status.CLOSED, reason="closed", now=now)
    if close:
        locked.refresh_from_db()  # conversations_end wrote in SQL; the rest is in hand
    return locked


def conversation_close(
    *, conversation: Conversation, reason: str = "closed", now: datetime | None = None
) -> Conversation:
    """Close an open conversation. Idempotent: an ended one is left exactly as it is.

    One that is past its expiry but not yet written down is written down as expired.
    """
    now = now or timezone.now()
    with transaction.atomic():
        if conversation.status == Conversation.Status.OPEN:
            status = Conversation.Status.EXPIRED if conversation.expires_at <= now else Conversation.Status.CLOSED
            conversations_end(
                ids=[conversation.pk], status=status, reason="expired" if status == "expired" else reason, now=now
            )
    conversation.refresh_from_db()
    return conversation


INVALID_NUMBER_REASON = "invalid_number"


def conversation_invalidate(*, conversation: Conversation) -> None:
    """A participant's number is invalid: close the conversation and fail its queued SMS."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if conversation.status == Conversation.Status.OPEN:
            conversation_close(conversation=conversation, reason=INVALID_NUMBER_REASON)
        notifications_fail_for_invalid_numbers(conversation_id=conversation.pk)
    logger.info("conversation %s closed: a participant number is invalid", conversation.pk)


def conversations_end(*, ids: list[Any], status: str, reason: str, now: datetime) -> int:
    """End open conversations in bulk: a few statements whatever the count.

    Participants become inactive and their pairs cool down for their service's cooldown.
    Returns how many conversations this call ended (others were already ended).
    """
    if not ids:
        return 0
    with transaction.atomic():
        open_rows = list(
            Conversation.objects.select_for_update()
            .filter(pk__in=ids, status=Conversation.Status.OPEN)
            .values_list("pk", "service__cooldown")
        )
        if not open_rows:
            return 0
        ended = [pk for pk, _ in open_rows]
        conversations = Conversation.objects.filter(pk__in=ended)
        if status == Conversation.Status.EXPIRED:
            conversations.update(status=status, closed_reason=reason, ended_at=F("expires_at"), updated_at=now)
        else:
            conversations.update(status=status, closed_reason=reason, ended_at=now, updated_at=now)
        by_cooldown: dict[int, list[Any]] = defaultdict(list)
        for pk, cooldown in open_rows:
            by_cooldown[cooldown].append(pk)
        for cooldown, pks in by_cooldown.items():
            Participant.objects.filter(conversation_id__in=pks, active=True).update(
                active=False, cooldown_until=_cooldown_end(status=status, cooldown=cooldown, now=now)
            )
        side_effects.conversations_ended(ended, status=status)
    return len(ended)


def _cooldown_end(*, status: str, cooldown: int, now: datetime) -> Any:
    """When the pair is free again: the cooldown runs from the moment the conversation ended,
    which for an expiry is its ``expires_at``, however late a sweep writes it down."""
    if not cooldown:
        return None
    if status != Conversation.Status.EXPIRED:
        return now + timedelta(seconds=cooldown)
    expires_at = Conversation.objects.filter(pk=OuterRef("conversation_id")).values("expires_at")[:1]
    return ExpressionWrapper(
        Subquery(expires_at, output_field=DateTimeField()) + Value(timedelta(seconds=cooldown)),
        output_field=DateTimeField(),
    )


def conversations_expire_due(*, now: datetime | None = None, batch_size: int = 5000) -> int:
    """Write down every open conversation past its expiry, in set-based batches.

    On PostgreSQL each batch is one statement (pick, end the conversations, free their
    participants with the cooldown running from expires_at): no ids travel to Python and
    back. Concurrent sweeps skip each other's rows.
    """
    now = now or timezone.now()
    total = 0
    while True:
        if connection.vendor == "postgresql":
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(_EXPIRE_BATCH_SQL, {"now": now, "batch": batch_size})
                    ids = [row[0] for row in cursor.fetchall()]
                side_effects.conversations_ended(ids, status=Conversation.Status.EXPIRED)
            if not ids:
                return total
            total += len(ids)
            continue
        ids = list(
            Conversation.objects.filter(status=Conversation.Status.OPEN, expires_at__lte=now)
            .order_by()
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        total += conversations_end(ids=ids, status=Conversation.Status.EXPIRED, reason="expired", now=now)


_EXPIRE_BATCH_SQL = """
WITH due AS (
    SELECT id FROM proxy_conversation
    WHERE status = 'open' AND expires_at <= %(now)s
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), ended AS (
    UPDATE proxy_conversation AS c
    SET status = 'expired', closed_reason = 'expired', ended_at = c.expires_at, updated_at = %(now)s
    FROM due WHERE c.id = due.id
    RETURNING c.id, c.expires_at, c.service_id
), freed AS (
    UPDATE proxy_participant AS p
    SET active = false,
        cooldown_until = CASE WHEN s.cooldown > 0 THEN ended.expires_at + s.cooldown * interval '1 second' END
    FROM ended JOIN proxy_service AS s ON s.id = ended.service_id
    WHERE p.conversation_id = ended.id AND p.active
    RETURNING p.id
)
SELECT id FROM ended
"""
