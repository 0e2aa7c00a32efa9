"""2. Scale: routing latency with 1,000, 100,000 and 1,000,000 open conversations.

The database grows in place (each step seeds only the conversations it adds, in SQL)
and is ANALYZEd, as autovacuum would, before measuring. Two figures per step:
``route_for_call`` in this process (the routing decision alone, one query), and the
answer webhook over HTTP, one request at a time (wrk, one connection), callers drawn
at random from every conversation seeded so far.
"""

from __future__ import annotations

import datetime as dt
import random
import time

from bench import answer, db, load
from bench.context import Context
from bench.report import Figure

TITLE = "Scale: routing latency against the number of open conversations"


def _route_latencies(context: Context, *, pool: list[str], upto: int, samples: int) -> list[float]:
    from proxy.selectors import route_for_call

    rng = random.Random(context.seed + upto)
    callers = [db.seeded_participant(rng.randrange(upto), pool=pool, seller=rng.random() < 0.5) for _ in range(samples)]
    for real, proxy in callers[: max(10, samples // 10)]:  # warm the connection and caches
        route_for_call(caller=real, proxy_number=proxy)
    latencies = []
    kinds: set[str] = set()
    for real, proxy in callers:
        started = time.perf_counter()
        route = route_for_call(caller=real, proxy_number=proxy)
        latencies.append((time.perf_counter() - started) * 1000)
        kinds.add(route.kind)
    if kinds != {"connect"}:
        context.report.note("2", f"known callers routed as {sorted(kinds)} at {upto:,}: expected only connect")
    return latencies


def run(context: Context) -> None:
    sizes = context.sizes
    report = context.report
    db.truncate_all()
    service = db.service_create(slug="bench-scale")
    pool = db.pool_seed(service=service, country="US", count=answer.POOL_SIZE, base=db.US_POOL_BASE)
    context.server_env["VONAGE_SIGNATURE_SECRET"] = answer.SIGNATURE_SECRET
    in_process: dict[int, list[float]] = {}
    over_http: dict[int, load.LoadResult] = {}
    seeded = 0
    try:
        with context.server() as server:
            headers = answer.signed_headers()
            for step in sizes.scale_steps:
                started = time.monotonic()
                db.conversations_seed(
                    service=service, start=seeded, stop=step, pool=pool, expires_in=dt.timedelta(days=1)
                )
                seeded = step
                db.analyze()
                report.note("2", f"seeded {step:,} open conversations in {time.monotonic() - started:.1f} s (SQL)")
                in_process[step] = _route_latencies(context, pool=pool, upto=step, samples=sizes.route_samples)
                callers = answer.callers_file(context, pool=pool, upto=step, count=5000, name=f"scale-{step}.txt")
                common = {"path": "/webhooks/answer", "callers": callers, "auth": headers["Authorization"]}
                answer.drive(server, **common, connections=1, seconds=1, seed=context.seed + 1)
                over_http[step] = answer.drive(
                    server, **common, connections=1, seconds=sizes.scale_http_seconds, seed=context.seed
                )
    finally:
        context.server_env.pop("VONAGE_SIGNATURE_SECRET", None)

    smallest, largest = sizes.scale_steps[0], sizes.scale_steps[-1]
    base_route = load.percentile(in_process[smallest], 50)
    base_http = over_http[smallest].p(50)
    for step in sizes.scale_steps:
        p50 = load.percentile(in_process[step], 50)
        report.add(
            Figure(
                "2",
                f"route_for_call p50 at {step:,} open conversations "
                f"(p99 {load.percentile(in_process[step], 99):.3g} ms)",
                p50,
                "ms",
                f"at {smallest:,}",
                base_route,
                f"{p50 / base_route:.2f}x",
                "<= 1.25x" if step == largest else "",
                p50 / base_route <= 1.25 if step == largest else None,
            )
        )
    for step in sizes.scale_steps:
        result = over_http[step]
        report.add(
            Figure(
                "2",
                f"answer webhook p50 over HTTP at {step:,} "
                f"(p99 {result.p(99):.3g} ms, {result.rate:.0f} req/s, 1 conn)",
                result.p(50),
                "ms",
                f"at {smallest:,}",
                base_http,
                f"{result.p(50) / base_http:.2f}x",
                "<= 1.25x" if step == largest else "",
                result.p(50) / base_http <= 1.25 if step == largest else None,
            )
        )
