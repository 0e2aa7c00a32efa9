"""3. Pool efficiency on a synthetic marketplace, against the lower bound and two baselines.

The marketplace: ``sellers`` sellers whose concurrent orders follow Zipf's law (the
k-th busiest has about 1/k of the busiest one's), ``buyers`` buyers, two countries
(US and GB; a few orders cross the border). Every order is one open conversation.

- Lower bound, per country: the largest number of open conversations any one
  person of that country is in. Nobody can serve the set with fewer numbers.
- One number per conversation, shared by both sides: dedicated (a number per
  order), and reused greedily (a number two people of a conversation both lack).
- Two numbers per conversation, as in Vonage's masked-calling sample.

The product's allocation runs twice: the pure chooser (proxy.allocation) over the
whole set in memory, and the real ``conversation_create`` against PostgreSQL with a
pool of exactly the lower bound per country: every order must get its numbers.
Then the same orders in PIN mode ``always`` on one number per country, and the latency
of a PIN call (``bench.pin``).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from bench import db, pin
from bench.context import Context
from bench.report import Figure

TITLE = "Pool efficiency: numbers used against the lower bound"
COUNTRIES = ("US", "GB")


@dataclass(frozen=True)
class Order:
    seller: str
    buyer: str


@dataclass(frozen=True)
class Marketplace:
    orders: list[Order]
    country: dict[str, str]  # real number -> country

    def concurrency(self) -> Counter[str]:
        held: Counter[str] = Counter()
        for order in self.orders:
            held[order.seller] += 1
            held[order.buyer] += 1
        return held

    def lower_bound(self) -> dict[str, int]:
        bound = dict.fromkeys(COUNTRIES, 0)
        for person, n in self.concurrency().items():
            bound[self.country[person]] = max(bound[self.country[person]], n)
        return bound


def marketplace(*, sellers: int, buyers: int, orders: int, rng: random.Random) -> Marketplace:
    country: dict[str, str] = {}
    seller_numbers = []
    for k in range(sellers):
        if rng.random() < 0.75:
            number = str(db.US_SELLER_BASE + k)
            country[number] = "US"
        else:
            number = str(db.GB_PERSON_BASE + k)
            country[number] = "GB"
        seller_numbers.append(number)
    buyers_by_country: dict[str, list[str]] = defaultdict(list)
    for j in range(buyers):
        if rng.random() < 0.7:
            number = str(db.US_BUYER_BASE + j)
            country[number] = "US"
        else:
            number = str(db.GB_PERSON_BASE + 1_000_000 + j)
            country[number] = "GB"
        buyers_by_country[country[number]].append(number)
    weights = list(itertools.accumulate(1 / rank for rank in range(1, sellers + 1)))
    chosen = rng.choices(seller_numbers, cum_weights=weights, k=orders)
    result = []
    for seller in chosen:
        home = country[seller]
        buyer_country = home if rng.random() < 0.95 else next(c for c in COUNTRIES if c != home)
        result.append(Order(seller=seller, buyer=rng.choice(buyers_by_country[buyer_country])))
    # A buyer ordering twice from one seller has two conversations with the same pair: allowed.
    rng.shuffle(result)
    return Marketplace(orders=result, country=country)


def shared_number_greedy(market: Marketplace) -> dict[str, int]:
    """One number per conversation for both sides, reused: first number neither side holds."""
    # Each country has its own numbers: held[person] is a set of (country, index).
    held: dict[str, set[tuple[str, int]]] = defaultdict(set)
    used = dict.fromkeys(COUNTRIES, 0)
    for order in market.orders:
        home = market.country[order.seller]
        taken = {n for c, n in held[order.seller] | held[order.buyer] if c == home}
        number = next(n for n in itertools.count() if n not in taken)
        held[order.seller].add((home, number))
        held[order.buyer].add((home, number))
        used[home] = max(used[home], number + 1)
    return used


def pure_chooser(market: Marketplace, bound: dict[str, int], rng: random.Random) -> tuple[dict[str, int], int]:
    """proxy.allocation over the whole set in memory, with a pool of exactly the bound."""
    from proxy.allocation import Holdings, PoolNumber, choose_proxy_number, pool_for_country

    pool = [PoolNumber(number=f"{c}{i}", country=c) for c in COUNTRIES for i in range(bound[c])]
    held: dict[str, set[str]] = defaultdict(set)
    used: dict[str, set[str]] = defaultdict(set)
    failures = 0
    for order in market.orders:
        for person, other in ((order.seller, order.buyer), (order.buyer, order.seller)):
            candidates = pool_for_country(pool, country=market.country[person], default_country="US")
            number = choose_proxy_number(
                candidates=candidates,
                holdings=Holdings(active=frozenset(held[person]), cooling={}),
                counterpart=other,
                sticky=None,
                rng=rng,
            )
            if number is None:
                failures += 1
                continue
            held[person].add(number)
            used[number[:2]].add(number)
    return {c: len(used[c]) for c in COUNTRIES}, failures


def product_allocation(
    context: Context, market: Marketplace, bound: dict[str, int]
) -> tuple[dict[str, int], int, float]:
    """The real conversation_create over the set; returns numbers used, 409s, seconds."""
    from django.db import connection

    from proxy.errors import PoolExhausted
    from proxy.services import conversation_create

    db.truncate_all()
    service = db.service_create(slug="bench-pool", default_country="US")
    db.pool_seed(service=service, country="US", count=bound["US"], base=db.US_POOL_BASE)
    db.pool_seed(service=service, country="GB", count=bound["GB"], base=db.GB_POOL_BASE)
    db.analyze()
    exhausted = 0
    started = time.perf_counter()
    for order in market.orders:
        try:
            conversation_create(
                service=service,
                participants=[{"number": order.seller}, {"number": order.buyer}],
                notify=False,
            )
        except PoolExhausted:
            exhausted += 1
    seconds = time.perf_counter() - started
    with connection.cursor() as cur:
        cur.execute(
            "SELECT n.country, count(DISTINCT p.proxy_number) FROM proxy_participant p "
            "JOIN numbers_virtualnumber n ON n.number = p.proxy_number WHERE p.active GROUP BY n.country"
        )
        used = dict.fromkeys(COUNTRIES, 0) | dict(cur.fetchall())
    return used, exhausted, seconds


def run(context: Context) -> None:
    sizes = context.sizes
    report = context.report
    rng = random.Random(context.seed)
    market = marketplace(sellers=sizes.sellers, buyers=sizes.buyers, orders=sizes.orders, rng=rng)
    bound = market.lower_bound()
    concurrency = market.concurrency()
    per_country_orders = Counter(market.country[o.seller] for o in market.orders)
    report.note(
        "3",
        f"{sizes.sellers:,} sellers (Zipf), {sizes.buyers:,} buyers, {len(market.orders):,} open orders "
        f"({', '.join(f'{c} {per_country_orders[c]:,}' for c in COUNTRIES)}); busiest person holds "
        f"{max(concurrency.values())} conversations; lower bound {bound}",
    )
    total_bound = sum(bound.values())
    greedy = shared_number_greedy(market)
    baselines = [
        ("two numbers per conversation (Vonage sample)", 2 * len(market.orders)),
        ("one dedicated number per conversation", len(market.orders)),
        ("one shared number per conversation, reused greedily", sum(greedy.values())),
    ]
    for name, value in baselines:
        report.add(
            Figure(
                "3",
                f"numbers needed: {name}",
                value,
                "numbers",
                "lower bound",
                total_bound,
                f"{value / total_bound:.2f}x",
            )
        )
    chooser_used, chooser_failures = pure_chooser(market, bound, random.Random(context.seed))
    report.add(
        Figure(
            "3",
            f"numbers used: proxy.allocation chooser, pool = lower bound ({chooser_failures} without a number)",
            sum(chooser_used.values()),
            "numbers",
            "lower bound",
            total_bound,
            f"{sum(chooser_used.values()) / total_bound:.2f}x",
            "= lower bound, 0 refused",
            chooser_used == bound and chooser_failures == 0,
        )
    )
    used, exhausted, seconds = product_allocation(context, market, bound)
    report.add(
        Figure(
            "3",
            f"numbers used: conversation_create on PostgreSQL, pool = lower bound ({exhausted} x 409)",
            sum(used.values()),
            "numbers",
            "lower bound",
            total_bound,
            f"{sum(used.values()) / total_bound:.2f}x; per country {used} vs {bound}",
            "= lower bound, 0 refused",
            used == bound and exhausted == 0,
        )
    )
    report.note(
        "3",
        f"conversation_create took {seconds:.1f} s for {len(market.orders):,} orders "
        f"({seconds / len(market.orders) * 1000:.2f} ms each, one process, pool of {total_bound:,})",
    )
    pin.run(context, market, bound)
