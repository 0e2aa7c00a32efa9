"""Choosing a proxy number for one participant: a pure function, no I/O.

The routing key is (real number, proxy number), so a person only needs a pool number
they do not already hold in another open conversation. Choosing per person, the
pool never needs more numbers than the largest number of open conversations any one
real number is in: the lower bound.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class PoolNumber:
    number: str
    country: str


@dataclass(frozen=True)
class Holdings:
    """What one real number holds right now."""

    active: frozenset[str]
    # proxy number -> real number of the counterpart of the cooling pair
    cooling: Mapping[str, str]


def pool_for_country(pool: Collection[PoolNumber], *, country: str, default_country: str) -> list[PoolNumber]:
    """The numbers a participant of ``country`` may get.

    Their own country when the pool has any number there, else the service's default country.
    """
    own = [n for n in pool if n.country == country]
    if own:
        return own
    return [n for n in pool if n.country == default_country]


def choose_proxy_number(
    *,
    candidates: Collection[PoolNumber],
    holdings: Holdings,
    counterpart: str,
    sticky: str | None,
    keep: str | None = None,
    rng: random.Random | None = None,
) -> str | None:
    """Pick a number for a participant, or None when every candidate is taken.

    - never a number the person holds in an open conversation;
    - never a number cooling after the person's conversation with someone else
      (a late call on it must not reach a new counterpart);
    - ``keep`` (a number the person is calling on right now) when it is a candidate and free for them;
    - the number the person last had with this same counterpart when free, even
      if cooling from that very pairing (their late calls then reach the right person);
    - otherwise a random free number, which spreads load across the pool.
    """
    numbers = {n.number for n in candidates}

    def allowed(number: str) -> bool:
        if number in holdings.active:
            return False
        cooling_with = holdings.cooling.get(number)
        return cooling_with is None or cooling_with == counterpart

    if keep and keep in numbers and allowed(keep):
        return keep
    if sticky and sticky in numbers and allowed(sticky):
        return sticky
    free = sorted(n for n in numbers if n not in holdings.active and n not in holdings.cooling)
    if not free:
        return None
    return (rng or random).choice(free)


# --- What the allocation read returns -------------------------------------------------------------


@dataclass(frozen=True)
class HeldPair:
    """A proxy number a real number holds (``active``) or is cooling on."""

    real_number: str
    proxy_number: str
    active: bool
    conversation_id: UUID
    # The conversation is past expires_at though no sweep has ended it yet.
    expired: bool
    # The other person of that conversation ("" if none).
    counterpart: str


@dataclass(frozen=True)
class AllocationView:
    held: list[HeldPair]
    # real number -> proxy number it had in the pair's latest conversation together
    sticky: dict[str, str]
    pool: list[PoolNumber]


def allocation_view_from_rows(rows: Iterable[Sequence[Any]]) -> AllocationView:
    """The allocation read's rows (``selectors.allocation_view``), typed.

    Each row: (kind, first, second, active, conversation id, expired, counterpart), kind
    being "held" (real number, proxy number, ...), "sticky" (real number, proxy number)
    or "pool" (number, country).
    """
    held: list[HeldPair] = []
    sticky: dict[str, str] = {}
    pool: list[PoolNumber] = []
    for kind, first, second, active, conversation_id, expired, counterpart in rows:
        if kind == "held":
            # SQLite answers 0/1 for booleans and hex text for UUIDs.
            held.append(HeldPair(first, second, bool(active), UUID(str(conversation_id)), bool(expired), counterpart))
        elif kind == "sticky":
            sticky[first] = second
        else:
            pool.append(PoolNumber(number=first, country=second))
    return AllocationView(held=held, sticky=sticky, pool=pool)


def holdings_of(*, reals: Iterable[str], held: Iterable[HeldPair]) -> dict[str, Holdings]:
    """Active and cooling numbers of each real number, with each cooling pair's counterpart."""
    active: dict[str, set[str]] = defaultdict(set)
    cooling: dict[str, dict[str, str]] = defaultdict(dict)
    for h in held:
        if h.active:
            active[h.real_number].add(h.proxy_number)
        else:
            cooling[h.real_number][h.proxy_number] = h.counterpart
    return {r: Holdings(active=frozenset(active[r]), cooling=cooling[r]) for r in reals}
