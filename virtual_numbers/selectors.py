"""Pool health and call figures for the staff dashboard.

The pool a service needs in a country is set by its busiest real number: a person in
N open conversations needs N distinct proxy numbers (see DESIGN.md, Allocation), so
headroom is the usable numbers minus that concurrency, not minus the conversation count.
Participants who route only by PIN (PIN mode ``always``) need no number of their own:
there a number carries up to ``PIN_NUMBER_CAPACITY`` open PINs, and one number per
country is a healthy pool.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from proxy.models import Call, Participant, Service
from virtual_numbers.models import PoolExhaustion, VirtualNumber

# Percent of a PIN pool's capacity (usable numbers x PIN_NUMBER_CAPACITY) that warns.
PIN_LOAD_WARNING = 80


@dataclass(frozen=True)
class PoolHealth:
    service_id: int
    service_name: str
    country: str
    numbers: int  # rented numbers in the pool (not released)
    usable: int  # active and voice-capable: what allocation may hand out
    draining: int
    open_conversations: int
    busiest_concurrency: int  # among participants routed by their number: the pool size they need
    exhaustions_24h: int
    warning_threshold: int
    pin_mode: str = "off"  # the service's
    pin_only: int = 0  # live participants who route only by PIN
    pin_capacity: int = 10_000  # open PINs one number carries

    @property
    def pin_pool(self) -> bool:
        """Every caller keys in a PIN: one number per country serves the whole service."""
        return self.pin_mode == "always"

    @property
    def needed(self) -> int:
        """Numbers this pool needs: the busiest person's, or enough for its PIN-only participants."""
        by_pin = math.ceil(self.pin_only / self.pin_capacity) if self.pin_capacity > 0 else 0
        return max(self.busiest_concurrency, by_pin, 1 if self.pin_pool else 0)

    @property
    def headroom(self) -> int:
        return self.usable - self.needed

    @property
    def pin_load(self) -> int:
        """Open PIN-only participants as a percentage of what the usable numbers carry."""
        if self.usable <= 0 or self.pin_capacity <= 0:
            return 100 if self.pin_only else 0
        return min(100, round(100 * self.pin_only / (self.usable * self.pin_capacity)))

    @property
    def warning(self) -> bool:
        if self.exhaustions_24h > 0:
            return True
        if self.pin_pool:
            # Spare numbers are no safety margin here: the PINs a number carries are.
            return self.headroom < 0 or self.pin_load >= PIN_LOAD_WARNING
        return self.headroom < self.warning_threshold

    @property
    def utilisation(self) -> int:
        """Numbers needed as a percentage of usable numbers (100 when there are none); for a
        PIN pool, its PIN load."""
        if self.pin_pool:
            return self.pin_load
        if self.usable <= 0:
            return 100
        return min(100, round(100 * self.needed / self.usable))


@dataclass(frozen=True)
class DayStats:
    day: date
    calls: int
    answered: int
    seconds: int

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.calls if self.calls else None

    @property
    def minutes(self) -> float:
        return round(self.seconds / 60, 1)


def _live_participants(*, now: datetime) -> QuerySet[Participant]:
    # An open conversation past expires_at reads as expired and no longer holds its numbers.
    return Participant.objects.live(now)


# A service gone since its numbers were counted (deleted meanwhile).
_UNKNOWN_SERVICE = ("?", "off")


def pool_health(
    *, service: Service | None = None, now: datetime | None = None, threshold: int | None = None
) -> list[PoolHealth]:
    """One row per (service, country) that has numbers, live conversations or recent 409s."""
    now = now or timezone.now()
    threshold = settings.POOL_HEADROOM_WARNING if threshold is None else threshold
    numbers = VirtualNumber.objects.filter(service__isnull=False).exclude(state=VirtualNumber.State.RELEASED)
    participants = _live_participants(now=now)
    exhaustions = PoolExhaustion.objects.filter(created_at__gte=now - timedelta(days=1))
    if service is not None:
        numbers = numbers.filter(service=service)
        participants = participants.filter(service=service)
        exhaustions = exhaustions.filter(service=service)

    counts: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in numbers.values("service_id", "country").annotate(
        total=Count("id"),
        usable=Count("id", filter=Q(state=VirtualNumber.State.ACTIVE, voice=True)),
        draining=Count("id", filter=Q(state=VirtualNumber.State.DRAINING)),
    ):
        key = (row["service_id"], row["country"])
        counts[key]["numbers"] = row["total"]
        counts[key]["usable"] = row["usable"]
        counts[key]["draining"] = row["draining"]

    # Grouped by the proxy number's country: that is the pool a participant drew from.
    pool_country = "proxy_number__country"
    for live in participants.values("service_id", pool_country).annotate(
        conversations=Count("conversation_id", distinct=True), pin_only=Count("id", filter=Q(routes_by_pair=False))
    ):
        bucket = counts[(live["service_id"], live[pool_country])]
        bucket["open_conversations"] = live["conversations"]
        bucket["pin_only"] = live["pin_only"]
    for person in (
        participants.filter(routes_by_pair=True)
        .values("service_id", pool_country, "real_number")
        .annotate(held=Count("conversation_id", distinct=True))
    ):
        bucket = counts[(person["service_id"], person[pool_country])]
        bucket["busiest"] = max(bucket["busiest"], person["held"])

    for refused in exhaustions.values("service_id", "country").annotate(n=Count("id")):
        counts[(refused["service_id"], refused["country"])]["exhaustions"] = refused["n"]

    services = {
        pk: (name, pin_mode)
        for pk, name, pin_mode in Service.objects.filter(pk__in={key[0] for key in counts}).values_list(
            "pk", "name", "pin_mode"
        )
    }
    rows = [
        PoolHealth(
            service_id=service_id,
            service_name=services.get(service_id, _UNKNOWN_SERVICE)[0],
            country=country,
            numbers=bucket["numbers"],
            usable=bucket["usable"],
            draining=bucket["draining"],
            open_conversations=bucket["open_conversations"],
            busiest_concurrency=bucket["busiest"],
            exhaustions_24h=bucket["exhaustions"],
            warning_threshold=threshold,
            pin_mode=services.get(service_id, _UNKNOWN_SERVICE)[1],
            pin_only=bucket["pin_only"],
            pin_capacity=settings.PIN_NUMBER_CAPACITY,
        )
        for (service_id, country), bucket in counts.items()
    ]
    return sorted(rows, key=lambda row: (row.service_name.lower(), row.country))


def calls_per_day(*, service: Service | None = None, days: int = 14, now: datetime | None = None) -> list[DayStats]:
    """Calls, answered calls and talk time per UTC day, oldest first, with empty days as zeros.

    A masked call is two legs: the caller's inbound leg and the outbound leg to the
    other party. A call is counted once, by its inbound leg; it was answered when the
    outbound leg was, and its talk time is the outbound leg's duration.
    """
    now = now or timezone.now()
    first_day = (now - timedelta(days=days - 1)).date()
    calls = Call.objects.filter(created_at__date__gte=first_day)
    if service is not None:
        calls = calls.filter(service=service)
    outbound = Q(direction=Call.Direction.OUTBOUND)
    by_day: dict[date, dict[str, Any]] = {
        row["day"]: dict(row)
        for row in calls.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            calls=Count("id", filter=~outbound),
            answered=Count("id", filter=outbound & Q(answered_at__isnull=False)),
            seconds=Sum("duration", filter=outbound),
        )
    }
    result = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        row: dict[str, Any] = by_day.get(day, {})
        result.append(
            DayStats(
                day=day,
                calls=row.get("calls", 0),
                answered=row.get("answered", 0),
                seconds=row.get("seconds") or 0,
            )
        )
    return result


def with_open_conversations(
    numbers: QuerySet[VirtualNumber], *, now: datetime | None = None
) -> QuerySet[VirtualNumber]:
    """``numbers`` annotated with ``open_count``: the open, unexpired conversations each routes.

    A correlated count per number, so a page of numbers never joins their whole history.
    """
    counts = (
        _live_participants(now=now or timezone.now())
        .filter(proxy_number=OuterRef("number"))
        .order_by()
        .values("proxy_number")
        .annotate(n=Count("conversation_id", distinct=True))
        .values("n")
    )
    return numbers.annotate(open_count=Coalesce(Subquery(counts), 0))
