"""What one read costs, by shape: the answer's route read against the reads it could become.

Part of benchmark 1 (issue 17). The answer webhook reads the database once; the question
this answers is how much of that read a different shape of data would save. Each read is
made the way the answer makes it (``connection.fetch_row``: prepared, binary results, on
Django's own connection in this process) for known callers of benchmark 1's data, in
rounds that take the reads in turn, and measured twice:

- the **PostgreSQL backend's CPU** per read, from ``/proc`` (the backend serves this
  process alone, so nothing else is counted);
- **this process's CPU** per read (``time.process_time``): the client's side, what a
  gunicorn worker pays for the same call.

The lowest round of each is kept. The reads:

- ``SELECT 1``: the round trip alone, with no table;
- one indexed read of one table (the one-read floor's own statement, ``bench.urls``);
- the answer's route read (``proxy.selectors``), the service held by this process as it
  is in a warm worker;
- a **route table**: a temporary table of the open routes, one row per (caller's number,
  proxy number) with every value the route read returns of the callee and the conversation,
  under a unique index, read by one probe. This is the read a route table kept by the
  services would give, without the writes that would keep it;
- the same route table joined to the service for its row version, which the answer still
  needs to know whether the service it holds is current (``proxy.selectors``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection

from bench import db
from bench.context import Context
from bench.report import Figure
from bench.server import cpu_seconds
from bench.urls import ONE_READ_SQL
from proxy import selectors

_PROTOTYPE = "bench_route_prototype"


def _prototype_sql() -> tuple[str, str, str]:
    """The temporary route table's definition, and its two reads (without and with the service)."""
    values = [
        *(f'callee."{f.column}" AS "callee_{f.column}"' for f in selectors._CALLEE_FIELDS),
        *(f'conversation."{f.column}" AS "conversation_{f.column}"' for f in selectors._CONVERSATION_FIELDS),
    ]
    create = (
        f"CREATE TEMPORARY TABLE {_PROTOTYPE} AS SELECT caller.real_number AS caller_real_number, "
        f"caller.proxy_number AS caller_proxy_number, caller.id AS caller_id, caller.public_id AS caller_public_id, "
        f"{', '.join(values)} {selectors._ROUTE_FROM} "
        "WHERE caller.active AND caller.routes_by_pair AND callee.active"
    )
    columns = ["caller_id", "caller_public_id"]
    columns += [f'"callee_{f.column}"' for f in selectors._CALLEE_FIELDS]
    columns += [f'"conversation_{f.column}"' for f in selectors._CONVERSATION_FIELDS]
    where = "WHERE route.caller_real_number = %s AND route.caller_proxy_number = %s"
    plain = f"SELECT {', '.join(f'route.{c}' for c in columns)} FROM {_PROTOTYPE} AS route {where}"
    version = selectors._SERVICE_VERSION
    with_service = (
        f"SELECT {', '.join(f'route.{c}' for c in columns)}, {version}, "
        f"CASE WHEN strpos(%s, ';' || {version} || ';') > 0 THEN NULL ELSE row_to_json(service)::text END "
        f"FROM {_PROTOTYPE} AS route JOIN proxy_service AS service ON service.id = route.conversation_service_id "
        f"{where}"
    )
    return create, plain, with_service


@dataclass
class Cost:
    backend_us: float
    client_us: float


def measure(context: Context, *, pool: list[str], conversations: int, rounds: int, reads: int) -> dict[str, Cost]:
    """CPU per read of each shape (µs), lowest round of ``rounds``; ``reads`` reads a round."""
    callers = [
        db.seeded_participant(i % conversations, pool=pool, seller=i % 2 == 0) for i in range(min(reads, conversations))
    ]
    # The answer's own read once, so this process holds the service as a warm worker does.
    selectors.route_for_call(caller=callers[0][0], proxy_number=callers[0][1])
    create, plain, with_service = _prototype_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_PROTOTYPE}")
        cursor.execute(create)
        cursor.execute(f"CREATE UNIQUE INDEX ON {_PROTOTYPE} (caller_real_number, caller_proxy_number)")
        cursor.execute(f"ANALYZE {_PROTOTYPE}")
    held = selectors._held_versions()
    shapes = {
        "select 1": ("SELECT 1", lambda real, proxy: []),
        "one read": (ONE_READ_SQL, lambda real, proxy: [real, proxy]),
        "route read": (selectors._VERSIONED_ROUTE_SQL, lambda real, proxy: [held, real, proxy]),
        "route table": (plain, lambda real, proxy: [real, proxy]),
        "route table + service": (with_service, lambda real, proxy: [held, real, proxy]),
    }
    arguments = {name: [make(real, proxy) for real, proxy in callers] for name, (_, make) in shapes.items()}
    rows: dict[str, tuple] = {}
    for name, (sql, _) in shapes.items():
        row = connection.fetch_row(sql, arguments[name][0])  # type: ignore[attr-defined]
        if row is None:
            raise RuntimeError(f"{name}: a known caller read nothing: the figures would measure a miss")
        if name in ("route read", "route table + service") and row[-1] is not None:
            raise RuntimeError(f"{name}: the service came back whole: this process does not hold it")
        rows[name] = row
    # The route table gives the route read's own values: the two measure the same answer.
    if rows["route read"][: len(rows["route table"])] != rows["route table"]:
        raise RuntimeError("the route table's row differs from the route read's")
    backend = connection.connection.info.backend_pid
    samples: dict[str, list[Cost]] = {name: [] for name in shapes}
    count = max(reads, len(callers))
    try:
        for _ in range(rounds):
            for name, (sql, _) in shapes.items():
                args = arguments[name]
                for i in range(50):  # warm: the statement prepared, its pages and plan cached
                    connection.fetch_row(sql, args[i % len(args)])  # type: ignore[attr-defined]
                server_before, client_before = cpu_seconds(backend), time.process_time()
                for i in range(count):
                    connection.fetch_row(sql, args[i % len(args)])  # type: ignore[attr-defined]
                server_after, client_after = cpu_seconds(backend), time.process_time()
                samples[name].append(
                    Cost((server_after - server_before) / count * 1e6, (client_after - client_before) / count * 1e6)
                )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {_PROTOTYPE}")
    return {
        name: Cost(min(c.backend_us for c in costs), min(c.client_us for c in costs)) for name, costs in samples.items()
    }


LABELS = {
    "select 1": "SELECT 1 (the round trip alone)",
    "one read": "one indexed read of one table (the one-read floor's)",
    "route table": "a route table, one probe (prototype: a temporary table of the open routes)",
    "route table + service": "a route table, one probe, plus the service's row version (what the answer needs)",
}


def run(context: Context, *, pool: list[str], answer_cpu_ms: float) -> None:
    """Benchmark 1's figures of the read's shapes, and what a route table would save an answer."""
    sizes = context.sizes
    costs = measure(
        context, pool=pool, conversations=sizes.answer_conversations, rounds=sizes.read_rounds, reads=sizes.read_count
    )
    route = costs["route read"]
    for name, label in LABELS.items():
        cost = costs[name]
        context.report.add(
            Figure(
                "1",
                f"PostgreSQL CPU per read: {label}; this process {cost.client_us:.0f} µs",
                cost.backend_us,
                "us",
                f"the answer's route read (this process {route.client_us:.0f} µs)",
                route.backend_us,
                f"{cost.backend_us / route.backend_us:.2f}x" if route.backend_us else "",
            )
        )
    table = costs["route table + service"]
    saved_us = (route.backend_us + route.client_us) - (table.backend_us + table.client_us)
    context.report.add(
        Figure(
            "1",
            "at most saved per answer by a route table (PostgreSQL + client CPU, route read less the route table's)",
            saved_us,
            "us",
            "answer webhook CPU per request, server + database",
            answer_cpu_ms * 1000,
            f"{saved_us / (answer_cpu_ms * 1000):.1%} of the answer" if answer_cpu_ms else "",
        )
    )
