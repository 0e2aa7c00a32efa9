"""4. Conversation creation over the REST API, 50 concurrent clients, SMS notifications on.

Each request is ``POST /api/v1/conversations`` with a fresh Idempotency-Key, two
random people of a large population (so the pool is never the limit) and
``notify: true``: the SMS outbox rows are written and their tasks enqueued on Redis
(the server's broker; no worker consumes them, the runner deletes its queue after).
The baseline is ``/bench/bare-api``: the same authentication, throttle, JSON parsing
and rendering with no work, under the same load. The database already holds 50,000
open conversations of the same service, analyzed, as a running one would.

Afterwards the routing invariants are checked in SQL: among active participants,
(real number, proxy number) is unique, and every conversation has two participants.
"""

from __future__ import annotations

import datetime as dt
import json
import random

from bench import db, load
from bench.context import Context
from bench.report import Figure
from bench.server import CpuMeter, bench_queues

TITLE = "Conversation creation over the API, concurrent clients"
POOL_SIZE = 100
PEOPLE = 200_000


def invariant_violations() -> tuple[int, int]:
    """(duplicate active pairs, conversations without exactly two participants)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM (SELECT 1 FROM proxy_participant WHERE active "
            "GROUP BY real_number, proxy_number HAVING count(*) > 1) AS d"
        )
        pairs = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM proxy_conversation c LEFT JOIN proxy_participant p ON p.conversation_id = c.id "
            "GROUP BY c.id HAVING count(p.id) <> 2"
        )
        lonely = len(cur.fetchall())
    return pairs, lonely


def _queue_length(redis_url: str) -> int | None:
    if not redis_url:
        return None
    import redis

    client = redis.Redis.from_url(redis_url)
    return sum(int(client.llen(name)) for name in bench_queues())


def _queue_delete(redis_url: str) -> None:
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).delete(*bench_queues())


def run(context: Context) -> None:
    from django.db import connection

    from proxy.api_keys import api_key_create

    sizes = context.sizes
    report = context.report
    db.truncate_all()
    service = db.service_create(slug="bench-create", rate_limit=1_000_000)
    pool = db.pool_seed(service=service, country="US", count=POOL_SIZE, base=db.US_POOL_BASE)
    # A production database is not empty, and autovacuum keeps its statistics current.
    # Into empty tables analyzed as empty, PostgreSQL plans sequential scans that grow
    # with every conversation the run creates.
    db.conversations_seed(
        service=service, start=0, stop=sizes.create_existing, pool=pool, expires_in=dt.timedelta(days=1)
    )
    _, key = api_key_create(service=service)
    db.analyze()
    _queue_delete(context.redis_url)
    rng = random.Random(context.seed)
    bodies = []
    for i in range(sizes.create_total):
        a, b = rng.sample(range(PEOPLE), 2)
        bodies.append(
            json.dumps(
                {
                    "participants": [
                        {"number": f"+{db.US_BUYER_BASE + a}", "name": f"Buyer {a}"},
                        {"number": f"+{db.US_SELLER_BASE + b}", "name": f"Seller {b}"},
                    ],
                    "external_id": f"order-{i}",
                    "notify": True,
                }
            ).encode()
        )

    def maker(path: str, port: int):  # type: ignore[no-untyped-def]
        def make(i: int) -> bytes:
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"bench-{path[1:6]}-{i}"}
            return load.post_request(path, port, bodies[i % len(bodies)], headers)

        return make

    problems: list[str] = []

    def keep(status: int, body: bytes) -> None:
        if status != 201 and len(problems) < 3:
            problems.append(f"{status} {body[:200]!r}")

    try:
        with context.server() as server:
            clients = sizes.create_clients
            # Warm every worker's connection and code paths on the bare endpoint first.
            load.closed_loop(
                port=server.port,
                make=maker("/bench/bare-api", server.port),
                clients=clients,
                total=min(200, sizes.create_total),
            )
            bare = load.closed_loop(
                port=server.port, make=maker("/bench/bare-api", server.port), clients=clients, total=sizes.create_total
            )
            meter = CpuMeter(server)
            meter.start()
            created = load.closed_loop(
                port=server.port,
                make=maker("/api/v1/conversations", server.port),
                clients=clients,
                total=sizes.create_total,
                keep=keep,
            )
            meter.stop()
        queued = _queue_length(context.redis_url)
    finally:
        _queue_delete(context.redis_url)

    ok = created.statuses.get(201, 0)
    report.add(
        Figure(
            "4",
            f"conversations created per second ({clients} clients, {ok:,} x 201 of {sizes.create_total:,})",
            round(ok / created.seconds) if created.seconds else 0,
            "conv/s",
            "bare authenticated API view",
            round(bare.rate),
            f"ratio {ok / created.seconds / bare.rate:.2f}" if bare.rate and created.seconds else "",
            ">= 200/s",
            ok / created.seconds >= 200 if created.seconds else False,
        )
    )
    for q in (50, 99):
        report.add(
            Figure(
                "4",
                f"creation latency p{q} under {clients} clients",
                created.p(q),
                "ms",
                "bare authenticated API view",
                bare.p(q),
                f"{created.p(q) / bare.p(q):.2f}x" if bare.p(q) else "",
            )
        )
    report.add(
        Figure(
            "4",
            "CPU per created conversation, server + database (contention-free cost; 2 cores / this = ceiling)",
            meter.per_request_ms(created.requests + created.errors),
            "ms",
            target="<= 10 ms for 200/s on 2 cores",
            met=meter.per_request_ms(created.requests + created.errors) <= 10,
        )
    )
    pairs, lonely = invariant_violations()
    report.add(
        Figure(
            "4",
            f"invariant violations ({pairs} duplicate active pairs, {lonely} conversations without 2 participants)",
            pairs + lonely,
            "",
            target="0",
            met=pairs + lonely == 0,
        )
    )
    done = created.requests + created.errors
    if done:
        report.note(
            "4",
            f"CPU per creation: server workers {meter.workers / done * 1000:.2f} ms, "
            f"their PostgreSQL backends {meter.database / done * 1000:.2f} ms",
        )
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM proxy_notification")
        notifications = cur.fetchone()[0]
    report.note(
        "4",
        f"{sizes.create_existing:,} open conversations in the database before the run; "
        f"statuses {dict(sorted(created.statuses.items()))}, transport errors {created.errors}; "
        f"{notifications:,} notification rows, {queued if queued is not None else 'n/a'} tasks left on the queue",
    )
    if problems:
        report.note("4", "first non-201 answers: " + "; ".join(problems))
