"""2. Scale: routing latency with 1,000, 100,000 and 1,000,000 open conversations.

The database grows in place (each step seeds only the conversations it adds, in SQL)
and is ANALYZEd, as autovacuum would, before measuring. Two figures per step:
``route_for_call`` in this process (the routing decision alone, one query), and the
answer webhook over HTTP, one request at a time (wrk, one connection), callers drawn
at random from every conversation seeded so far.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import time
from dataclasses import dataclass

from bench import answer, db, load
from bench.context import Context
from bench.report import Figure
from bench.server import cpu_seconds

TITLE = "Scale: routing latency against the number of open conversations"


@dataclass
class Sample:
    """Latencies of some rounds and the CPU one route costs (this process + its backend)."""

    rounds: list[list[float]]
    cpu_ms: float

    @property
    def p50(self) -> float:
        # Other work on the machine only ever adds time: the quietest round is the truest.
        return min(load.percentile(r, 50) for r in self.rounds)

    @property
    def p99(self) -> float:
        return load.percentile([x for r in self.rounds for x in r], 99)


def _backend_cpu_seconds() -> float:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    return cpu_seconds(pid, missing=float("nan"))  # NaN: PostgreSQL on another machine


def _route_sample(context: Context, *, pool: list[str], upto: int, samples: int, rounds: int) -> Sample:
    from proxy.selectors import route_for_call

    rng = random.Random(context.seed + upto)
    callers = [db.seeded_participant(rng.randrange(upto), pool=pool, seller=rng.random() < 0.5) for _ in range(samples)]
    for real, proxy in callers[: max(10, samples // 10)]:  # warm the connection and caches
        route_for_call(caller=real, proxy_number=proxy)
    kinds: set[str] = set()
    results: list[list[float]] = []
    per_round = max(1, samples // rounds)
    backend_before, process_before = _backend_cpu_seconds(), time.process_time()
    for r in range(rounds):
        latencies = []
        for real, proxy in callers[r * per_round : (r + 1) * per_round]:
            started = time.perf_counter()
            route = route_for_call(caller=real, proxy_number=proxy)
            latencies.append((time.perf_counter() - started) * 1000)
            kinds.add(route.kind)
        results.append(latencies)
    cpu = (time.process_time() - process_before) + (_backend_cpu_seconds() - backend_before)
    if kinds != {"connect"}:
        context.report.note("2", f"known callers routed as {sorted(kinds)} at {upto:,}: expected only connect")
    return Sample(rounds=results, cpu_ms=cpu / (per_round * rounds) * 1000)


def run(context: Context) -> None:
    sizes = context.sizes
    report = context.report
    db.truncate_all()
    service = db.service_create(slug="bench-scale")
    pool = db.pool_seed(service=service, country="US", count=answer.POOL_SIZE, base=db.US_POOL_BASE)
    in_process: dict[int, Sample] = {}
    over_http: dict[int, list[load.LoadResult]] = {}
    seeded = 0
    with context.server(VONAGE_SIGNATURE_SECRET=answer.SIGNATURE_SECRET) as server:
        headers = answer.signed_headers()
        for step in sizes.scale_steps:
            started = time.monotonic()
            db.conversations_seed(service=service, start=seeded, stop=step, pool=pool, expires_in=dt.timedelta(days=1))
            seeded = step
            db.analyze()
            report.note("2", f"seeded {step:,} open conversations in {time.monotonic() - started:.1f} s (SQL)")
            in_process[step] = _route_sample(
                context, pool=pool, upto=step, samples=sizes.route_samples, rounds=sizes.scale_rounds
            )
            callers = answer.callers_file(context, pool=pool, upto=step, count=5000, name=f"scale-{step}.txt")
            one_connection = functools.partial(
                answer.drive, server, path="/webhooks/answer", callers=callers, auth=headers["Authorization"]
            )
            if sizes.warmup_seconds:
                one_connection(connections=1, seconds=sizes.warmup_seconds, seed=context.seed + 1)
            seconds = sizes.scale_http_seconds / sizes.scale_rounds
            over_http[step] = [
                one_connection(connections=1, seconds=seconds, seed=context.seed + r) for r in range(sizes.scale_rounds)
            ]

    smallest, largest = sizes.scale_steps[0], sizes.scale_steps[-1]
    base = in_process[smallest]
    for step in sizes.scale_steps:
        sample = in_process[step]
        report.add(
            Figure(
                "2",
                f"route_for_call p50 at {step:,} open conversations "
                f"(p99 {sample.p99:.3g} ms; CPU {sample.cpu_ms:.3g} ms a route, {base.cpu_ms:.3g} at {smallest:,})",
                sample.p50,
                "ms",
                f"at {smallest:,}",
                base.p50,
                f"{sample.p50 / base.p50:.2f}x",
                "<= 1.25x" if step == largest else "",
                sample.p50 / base.p50 <= 1.25 if step == largest else None,
            )
        )
    base_http = min(r.p(50) for r in over_http[smallest])
    for step in sizes.scale_steps:
        results = over_http[step]
        p50 = min(r.p(50) for r in results)
        rate = sum(r.requests for r in results) / sum(r.seconds for r in results)
        report.add(
            Figure(
                "2",
                f"answer webhook p50 over HTTP at {step:,} "
                f"(p99 {max(r.p(99) for r in results):.3g} ms, {rate:.0f} req/s, 1 connection)",
                p50,
                "ms",
                f"at {smallest:,}",
                base_http,
                f"{p50 / base_http:.2f}x",
                "<= 1.25x" if step == largest else "",
                p50 / base_http <= 1.25 if step == largest else None,
            )
        )
    report.note("2", f"p50 = the lowest of {sizes.scale_rounds} rounds' p50 (other load on the machine only adds time)")
