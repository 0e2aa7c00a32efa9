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
- one indexed read of one table (``ONE_READ_SQL``, the one-read floor's own statement);
- the answer's route read (``proxy.selectors``), the service held by this process as it
  is in a warm worker;
- a **route table**: a table of the open routes (``PROTOTYPE``, made from the seeded data
  for the benchmark and dropped after it), one row per (caller's number, proxy number) with
  every value the route read returns of the callee and the conversation, under a unique
  index, read by one probe. This is the read a route table kept by the services would
  give, without the writes that would keep it. ``/bench/route-table-read`` reads it under
  load, as the route-read floor reads the product's route;
- the same route table joined to the service for its row version, which the answer still
  needs to know whether the service it holds is current (``proxy.selectors``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection

from bench import db
from bench.context import Context
from bench.report import Figure
from bench.server import cpu_seconds
from proxy import selectors
from proxy.models import Participant

# The one-read floor's statement (``/bench/one-read``): the caller's participant row by the
# partial unique index on open (real_number, proxy_number).
ONE_READ_SQL = (
    "SELECT id, conversation_id FROM proxy_participant WHERE real_number = %s AND proxy_number = %s AND active"
)
PROTOTYPE = "bench_route_prototype"


def _prototype_sql() -> tuple[str, str, str]:
    """The route table's definition, and its two reads (without and with the service)."""
    values = [
        *(f'callee."{f.column}" AS "callee_{f.column}"' for f in selectors._CALLEE_FIELDS),
        *(f'conversation."{f.column}" AS "conversation_{f.column}"' for f in selectors._CONVERSATION_FIELDS),
    ]
    create = (
        f"CREATE TABLE {PROTOTYPE} AS SELECT caller.real_number AS caller_real_number, "
        f"caller.proxy_number AS caller_proxy_number, caller.id AS caller_id, caller.public_id AS caller_public_id, "
        f"{', '.join(values)} {selectors._ROUTE_FROM} "
        "WHERE caller.active AND caller.routes_by_pair AND callee.active"
    )
    columns = ["caller_id", "caller_public_id"]
    columns += [f'"callee_{f.column}"' for f in selectors._CALLEE_FIELDS]
    columns += [f'"conversation_{f.column}"' for f in selectors._CONVERSATION_FIELDS]
    where = "WHERE route.caller_real_number = %s AND route.caller_proxy_number = %s"
    plain = f"SELECT {', '.join(f'route.{c}' for c in columns)} FROM {PROTOTYPE} AS route {where}"
    version = selectors._SERVICE_VERSION
    with_service = (
        f"SELECT {', '.join(f'route.{c}' for c in columns)}, {version}, "
        f"CASE WHEN strpos(%s, ';' || {version} || ';') > 0 THEN NULL ELSE row_to_json(service)::text END "
        f"FROM {PROTOTYPE} AS route JOIN proxy_service AS service ON service.id = route.conversation_service_id "
        f"{where}"
    )
    return create, plain, with_service


_CREATE, ROUTE_TABLE_SQL, ROUTE_TABLE_SERVICE_SQL = _prototype_sql()


@contextmanager
def prototype() -> Iterator[None]:
    """The prototype route table, from the open routes now in the database, for as long as
    the block runs (a table of the benchmark's database: the server's workers read it too)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PROTOTYPE}")
        cursor.execute(_CREATE)
        cursor.execute(f"CREATE UNIQUE INDEX ON {PROTOTYPE} (caller_real_number, caller_proxy_number)")
        cursor.execute(f"ANALYZE {PROTOTYPE}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {PROTOTYPE}")


def route_table_read(caller: str, proxy_number: str) -> Participant | None:
    """The prototype read the way the answer reads its route (``proxy.selectors``, with this
    statement in place of the join): the service checked by version against the ones this
    process holds, the callee, conversation and service built as for an answer."""
    found = selectors._open_route(caller=caller, proxy_number=proxy_number, versioned_sql=ROUTE_TABLE_SERVICE_SQL)
    return found.callee if found is not None else None


@dataclass
class Cost:
    backend_us: float
    client_us: float


def measure(*, pool: list[str], conversations: int, rounds: int, reads: int) -> dict[str, Cost]:
    """CPU per read of each shape (µs), lowest round of ``rounds``; ``reads`` reads a round."""
    callers = [
        db.seeded_participant(i % conversations, pool=pool, seller=i % 2 == 0) for i in range(min(reads, conversations))
    ]
    # The answer's own read once, so this process holds the service as a warm worker does.
    selectors.route_for_call(caller=callers[0][0], proxy_number=callers[0][1])
    held = selectors._held_versions()
    shapes = {
        "select 1": ("SELECT 1", lambda real, proxy: []),
        "one read": (ONE_READ_SQL, lambda real, proxy: [real, proxy]),
        "route read": (selectors._VERSIONED_ROUTE_SQL, lambda real, proxy: [held, real, proxy]),
        "route table": (ROUTE_TABLE_SQL, lambda real, proxy: [real, proxy]),
        "route table + service": (ROUTE_TABLE_SERVICE_SQL, lambda real, proxy: [held, real, proxy]),
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
    return {
        name: Cost(min(c.backend_us for c in costs), min(c.client_us for c in costs)) for name, costs in samples.items()
    }


LABELS = {
    "select 1": "SELECT 1 (the round trip alone)",
    "one read": "one indexed read of one table (the one-read floor's)",
    "route table": "a route table, one probe (prototype: a table of the open routes)",
    "route table + service": "a route table, one probe, plus the service's row version (what the answer needs)",
}


def run(context: Context, *, pool: list[str], answer_cpu_ms: float) -> None:
    """Benchmark 1's figures of the read's shapes, and what a route table would save an answer."""
    sizes = context.sizes
    costs = measure(
        pool=pool, conversations=sizes.answer_conversations, rounds=sizes.read_rounds, reads=sizes.read_count
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
            "saved per answer by a route table, the reads alone "
            "(PostgreSQL + this process: route read less route table + service)",
            saved_us,
            "us",
            "answer webhook CPU per request, server + database",
            answer_cpu_ms * 1000,
            f"{saved_us / (answer_cpu_ms * 1000):.1%} of the answer" if answer_cpu_ms else "",
        )
    )
