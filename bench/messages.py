"""6. Masked messages: texts relayed per second under 20 concurrent senders, and the delay from
the inbound webhook to the provider's send.

The server (gunicorn) takes Vonage-shaped inbound SMS webhooks, signed with the SMS
``sig``; a real Celery worker on Redis sends the relays through the sandbox provider
(which writes each SMS it accepts to its table, as Vonage's API would accept it). The
database holds ``messages_existing`` open conversations; 20 of their buyers text their
proxy number at once, as fast as the server answers (closed loop), and one webhook in
ten is delivered twice, at once, as Vonage does when it retries. Then:

- relays per second: texts whose relay the provider accepted, over the time from the
  first webhook to the last send;
- the delay from the webhook (the relay's ``created_at``, written on receipt) to the
  provider's send (the sandbox SMS's ``created_at``), p50 and p99, under that load and
  again at half the relay rate (open loop), where no backlog builds;
- duplicates (a text sent twice) and lost texts (accepted, never sent): both must be 0;
- CPU per relay: the web workers, the Celery worker and their PostgreSQL backends.

The service's caps are on (set high, so counting costs what it costs) and it has no
callback URL (no marketplace callbacks are written).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from bench import db, load
from bench.context import Context
from bench.report import Figure
from bench.server import BENCH_QUEUE, CpuMeter, bench_queues, celery_workers, tree_cpu_seconds

TITLE = "Masked messages: relays per second and webhook-to-send delay, 20 senders, real worker"

POOL_SIZE = 100
SENDERS = 20
SIGNATURE_SECRET = "bench-sms-signature-secret"  # noqa: S105
# The Celery worker under test (BENCH_MESSAGES_POOL / BENCH_MESSAGES_CONCURRENCY compare others).
WORKER_POOL = os.environ.get("BENCH_MESSAGES_POOL", "prefork")
WORKER_CONCURRENCY = int(os.environ.get("BENCH_MESSAGES_CONCURRENCY", "2"))
DRAIN_TIMEOUT = 180.0


@dataclass(frozen=True)
class Sender:
    real: str
    proxy: str


def _senders(pool: list[str], existing: int) -> list[Sender]:
    """20 buyers spread over the seeded conversations; each texts their own proxy number."""
    step = existing // SENDERS
    people = []
    for n in range(SENDERS):
        real, proxy = db.seeded_participant(n * step, pool=pool)
        people.append(Sender(real=real, proxy=proxy))
    return people


def _bodies(senders: list[Sender], *, count: int, tag: str, duplicate_every: int, seed: int) -> list[bytes]:
    """``count`` signed inbound SMS (plus repeats of one in ``duplicate_every``), in sending order."""
    from webhooks.signatures import sms_sign_params

    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        sender = senders[i % len(senders)]
        text = rng.choice(["At the gate, blue car.", "Coming down now", "Je suis là 🚗", "5 min away, sorry!"])
        params = {
            "msisdn": sender.real,
            "to": sender.proxy,
            "messageId": f"{tag}{i:010d}",
            "text": text,
            "type": "unicode" if "🚗" in text else "text",
            "keyword": text.split()[0].upper(),
            "message-timestamp": "2026-12-03 12:00:00",
        }
        body = json.dumps(sms_sign_params(params, secret=SIGNATURE_SECRET)).encode()
        bodies.append(body)
        if duplicate_every and i % duplicate_every == 0:
            bodies.append(body)  # Vonage's retry, sent right behind the first
    return bodies


def _sandbox_truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE telephony_sandboxmessage RESTART IDENTITY")


def _queue_delete(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).delete(*bench_queues())


def _counts(tag: str) -> dict[str, Any]:
    """What the run left, for texts whose Vonage id starts with ``tag``."""
    from django.db import connection

    pattern = f'["{tag}%'
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'sent'), min(created_at) "
            "FROM proxy_message WHERE kind = 'relay' AND inbound_ids::text LIKE %s",
            [pattern],
        )
        relays, sent, first = cur.fetchone()
        cur.execute(
            "SELECT count(*), max(s.created_at), "
            "percentile_disc(0.5) WITHIN GROUP (ORDER BY s.created_at - m.created_at), "
            "percentile_disc(0.99) WITHIN GROUP (ORDER BY s.created_at - m.created_at) "
            "FROM proxy_message AS m JOIN telephony_sandboxmessage AS s ON s.client_ref = 'message-' || m.id "
            "WHERE m.kind = 'relay' AND m.inbound_ids::text LIKE %s AND s.part = 1",
            [pattern],
        )
        provider_sends, last_send, p50, p99 = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM (SELECT s.client_ref FROM telephony_sandboxmessage AS s "
            "JOIN proxy_message AS m ON s.client_ref = 'message-' || m.id "
            "WHERE m.inbound_ids::text LIKE %s AND s.part = 1 GROUP BY s.client_ref HAVING count(*) > 1) AS d",
            [pattern],
        )
        doubled = cur.fetchone()[0]
    return {
        "relays": relays,
        "sent": sent,
        "first": first,
        "last_send": last_send,
        "provider_sends": provider_sends,
        "p50_ms": p50.total_seconds() * 1000 if p50 is not None else float("nan"),
        "p99_ms": p99.total_seconds() * 1000 if p99 is not None else float("nan"),
        "doubled": doubled,
    }


def _drain(tag: str, expected: int, *, timeout: float) -> dict[str, Any]:
    """Wait (polling the database) until every expected relay was sent, or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        counts = _counts(tag)
        if counts["sent"] >= expected or time.monotonic() >= deadline:
            return counts
        time.sleep(0.25)


def _drain_queue(redis_url: str, *, timeout: float) -> float:
    """Wait until the worker took and finished every task on the queue; when it did (monotonic)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    # kombu keeps a task it handed out in "unacked" until the worker acknowledges it (acks_late).
    while (any(client.llen(name) for name in bench_queues()) or client.hlen("unacked")) and time.monotonic() < deadline:
        time.sleep(0.02)
    return time.monotonic()


@dataclass
class Phase:
    seconds: float
    worker_cpu: float


def _empty_tasks(redis_url: str, workers: list[Any], count: int) -> Phase:
    """The worker's ceiling: ``count`` send_message tasks that find nothing to send."""
    from proxy.outbox import queue_now

    cpu = sum(tree_cpu_seconds(worker.pid) for worker in workers)
    began = time.monotonic()
    for _ in range(count):
        queue_now("proxy.tasks.send_message", 0)
    ended = _drain_queue(redis_url, timeout=DRAIN_TIMEOUT)
    return Phase(ended - began, sum(tree_cpu_seconds(worker.pid) for worker in workers) - cpu)


def run(context: Context) -> None:
    from django.db import connection

    sizes = context.sizes
    report = context.report
    if not context.redis_url:
        report.note("7", "skipped: needs Redis for a real Celery worker (BENCH_REDIS_URL)")
        return
    db.truncate_all()
    _sandbox_truncate()
    service = db.service_create(slug="bench-messages", rate_limit=1_000_000)
    # Caps on, and high: the counting is measured, the holding is not.
    service.message_limit_conversation = 1_000_000
    service.message_limit_service = 1_000_000
    service.save(update_fields=["message_limit_conversation", "message_limit_service"])
    pool = db.pool_seed(service=service, country="US", count=POOL_SIZE, base=db.US_POOL_BASE)
    db.conversations_seed(
        service=service, start=0, stop=sizes.messages_existing, pool=pool, expires_in=dt.timedelta(days=1)
    )
    db.analyze()
    senders = _senders(pool, sizes.messages_existing)
    total = sizes.messages_total
    bodies = _bodies(senders, count=total, tag="L", duplicate_every=10, seed=context.seed)
    warmup = _bodies(senders, count=SENDERS * 2, tag="W", duplicate_every=0, seed=context.seed + 1)
    _queue_delete(context.redis_url)

    env = {
        "VONAGE_PROVIDER": "sandbox",
        "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
        "VONAGE_SIGNATURE_METHOD": "md5hash",
    }
    problems: list[str] = []

    def keep(status: int, body: bytes) -> None:
        if status != 200 and len(problems) < 3:
            problems.append(f"{status} {body[:200]!r}")

    def maker(batch: list[bytes], port: int, path: str = "/webhooks/sms/inbound"):  # type: ignore[no-untyped-def]
        def make(i: int) -> bytes:
            return load.post_request(path, port, batch[i], {})

        return make

    try:
        with (
            context.server(**env) as server,
            celery_workers(
                env={**context.server_env, **env},
                queue=BENCH_QUEUE,
                concurrency=WORKER_CONCURRENCY,
                pool=WORKER_POOL,
                log_path=context.scratch / "celery-worker.log",
            ) as workers,
        ):
            # Warm up every web and worker process (and prove the pipeline works) first.
            load.closed_loop(port=server.port, make=maker(warmup, server.port), clients=SENDERS, total=len(warmup))
            warmed = _drain("W", len(warmup), timeout=60)
            if warmed["sent"] < len(warmup):
                raise RuntimeError(f"warm-up: {warmed['sent']} of {len(warmup)} relays sent; see the worker log")

            # Baselines: the webhook's own reading and signature check, and tasks with nothing to do.
            bare = load.closed_loop(
                port=server.port,
                make=maker(bodies, server.port, "/bench/sms-signed"),
                clients=SENDERS,
                total=len(bodies),
            )
            empty = _empty_tasks(context.redis_url, workers, total)

            meter = CpuMeter(server)
            meter.start()
            worker_cpu = sum(tree_cpu_seconds(worker.pid) for worker in workers)
            began = dt.datetime.now(dt.UTC)
            accepted = load.closed_loop(
                port=server.port, make=maker(bodies, server.port), clients=SENDERS, total=len(bodies), keep=keep
            )
            loaded = _drain("L", total, timeout=DRAIN_TIMEOUT)
            meter.stop()
            worker_cpu = sum(tree_cpu_seconds(worker.pid) for worker in workers) - worker_cpu

            # The delay without a backlog: half the relay rate, open loop.
            seconds = (loaded["last_send"] - began).total_seconds() if loaded["last_send"] else float("nan")
            rate = loaded["sent"] / seconds if seconds > 0 else 0.0
            steady_rate = max(rate / 2, 1.0)
            steady_seconds = sizes.messages_steady_seconds
            # As many as the open loop sends: one every 1/rate seconds for steady_seconds.
            steady = _bodies(
                senders, count=max(1, int(steady_rate * steady_seconds)), tag="S", duplicate_every=0, seed=context.seed
            )
            load.open_loop(port=server.port, make=maker(steady, server.port), rate=steady_rate, seconds=steady_seconds)
            calm = _drain("S", len(steady), timeout=DRAIN_TIMEOUT)
    finally:
        _queue_delete(context.redis_url)

    empty_rate = total / empty.seconds if empty.seconds else float("nan")
    report.add(
        Figure(
            "7",
            f"texts relayed per second ({SENDERS} senders, {loaded['sent']:,} of {total:,} sent, from the first "
            "webhook to the last send)",
            round(rate),
            "relays/s",
            f"worker's empty tasks ({WORKER_POOL}, {WORKER_CONCURRENCY})",
            round(empty_rate),
            f"ratio {rate / empty_rate:.2f}" if empty_rate else "",
            ">= 200/s",
            rate >= 200,
        )
    )
    report.add(
        Figure(
            "7",
            f"inbound SMS webhooks answered per second, {SENDERS} clients (p99 {accepted.p(99):.1f} ms)",
            round(accepted.rate),
            "req/s",
            "signature check alone",
            round(bare.rate),
            f"ratio {accepted.rate / bare.rate:.2f}" if bare.rate else "",
        )
    )
    for q in (50, 99):
        report.add(
            Figure(
                "7",
                f"delay webhook -> provider send p{q}, under that load",
                round(loaded[f"p{q}_ms"], 1),
                "ms",
                f"at half the relay rate ({steady_rate:,.0f}/s, open loop)",
                round(calm[f"p{q}_ms"], 1),
            )
        )
    # A text sent twice by the provider, or relayed twice (more relays than texts), is a duplicate.
    extra_relays = max(loaded["relays"] - total, 0)
    duplicates = loaded["doubled"] + extra_relays + calm["doubled"]
    lost = total - loaded["sent"] + len(steady) - calm["sent"]
    report.add(
        Figure(
            "7",
            f"duplicates ({loaded['doubled'] + calm['doubled']} texts sent twice, {extra_relays} extra relays) "
            f"+ lost texts ({lost}), of {total + len(steady):,}",
            duplicates + lost,
            "",
            target="0",
            met=duplicates == 0 and lost == 0,
        )
    )
    done = loaded["sent"]
    if done:
        cpu_ms = (meter.workers + meter.database + worker_cpu) / done * 1000
        report.add(
            Figure(
                "7",
                "CPU per relay: web workers + Celery worker + PostgreSQL (2 cores / this = ceiling)",
                round(cpu_ms, 2),
                "ms",
                target="<= 10 ms for 200/s on 2 cores",
                met=cpu_ms <= 10,
            )
        )
        report.note(
            "7",
            f"CPU per relay: web {meter.workers / done * 1000:.2f} ms, worker {worker_cpu / done * 1000:.2f} ms "
            f"(an empty task: {empty.worker_cpu / total * 1000:.2f} ms), "
            f"PostgreSQL {meter.database / done * 1000:.2f} ms",
        )
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM proxy_callevent WHERE source = 'sms-inbound'")
        events = cur.fetchone()[0]
    report.note(
        "7",
        f"{sizes.messages_existing:,} open conversations; {len(bodies):,} webhooks ({len(bodies) - total} repeats), "
        f"statuses {dict(sorted(accepted.statuses.items()))}, transport errors {accepted.errors}; "
        f"{events:,} raw events kept; Celery worker: {WORKER_POOL} pool, concurrency {WORKER_CONCURRENCY}; "
        f"steady phase: {calm['sent']} of {len(steady)} sent",
    )
    if problems:
        report.note("7", "first non-200 answers: " + "; ".join(problems))
