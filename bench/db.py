"""The benchmark database: created on demand, migrated, emptied, and bulk-seeded in SQL.

Seeding never goes through the ORM row by row: one ``INSERT ... SELECT`` over
``generate_series`` per table writes a million conversations in seconds. Column lists
are built from the models, so a field the product adds later gets its default
instead of breaking the seed.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# Deterministic conversation ids: the seeded row i gets this uuid with i in its last 12 hex digits.
UUID_PREFIX = "00000000-0000-4000-8000-"

# People and pool numbers are valid numbers (phonenumbers' is_valid_number), in ranges apart.
US_SELLER_BASE = 12012000000  # +1 201 200 0000 ...
US_BUYER_BASE = 12013000000  # +1 201 300 0000 ... (up to +1 201 999 9999)
US_POOL_BASE = 12015550200  # +1 201 555 0200 ...
GB_PERSON_BASE = 447500000000  # +44 7500 000000 ...
GB_POOL_BASE = 447400000000  # +44 7400 000000 ...


def conversation_uuid(i: int) -> str:
    return f"{UUID_PREFIX}{i:012x}"


def database_ensure(url: str) -> None:
    """Create the database named in ``url`` when it does not exist yet."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def product_tables() -> list[str]:
    from django.apps import apps

    return [m._meta.db_table for label in ("proxy", "numbers") for m in apps.get_app_config(label).get_models()]


def truncate_all() -> None:
    """Empty every table of the product's apps (not auth, not the scheduler's)."""
    from django.db import connection

    tables = sql.SQL(", ").join(sql.Identifier(t) for t in product_tables())
    with connection.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables).as_string(None))


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        for table in product_tables():
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)).as_string(None))


def _literal(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


Expr = str | tuple[str, list[Any]]


def insert_select(model: Any, *, values: dict[str, Expr], source: str, params: list[Any] | None = None) -> int:
    """``INSERT INTO <model table> (...) SELECT ... FROM <source>``.

    ``values`` maps field names to SQL expressions over the ``source`` rows, each
    alone or with its parameters as ``(expression, [params])``; every other column
    gets the field's default, NULL, or now() for auto_now fields. ``params`` are the
    ``source``'s.
    """
    from django.db import connection

    columns: list[str] = []
    expressions: list[str] = []
    select_params: list[Any] = []
    for field in model._meta.concrete_fields:
        column = connection.ops.quote_name(field.column)
        if field.name in values:
            given = values[field.name]
            expression, expression_params = given if isinstance(given, tuple) else (given, [])
            select_params.extend(expression_params)
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            expression = "now()"
        elif field.default is uuid.uuid4:
            # A fresh one per row (a unique column such as Participant.public_id), not one for all.
            expression = "gen_random_uuid()"
        elif field.has_default():
            default = field.get_default()
            if isinstance(default, dt.datetime):
                expression = "now()"
            else:
                expression = "%s"
                select_params.append(_literal(field.get_db_prep_save(default, connection)))
        elif field.null:
            expression = "NULL"
        elif field.primary_key:
            continue  # identity column
        else:
            raise ValueError(f"bench seed: no value for required column {model.__name__}.{field.name}")
        columns.append(column)
        expressions.append(expression)
    statement = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM {source}"
    )
    with connection.cursor() as cur:
        # The seeded rows are consistent by construction: skip the per-row foreign-key
        # triggers (a superuser setting; without the right, they simply run).
        replica = _session_replication_role(cur, "replica")
        try:
            cur.execute(statement, [*select_params, *(params or [])])
            return cur.rowcount
        finally:
            if replica:
                _session_replication_role(cur, "origin")


def _session_replication_role(cur: Any, role: str) -> bool:
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic():
            cur.execute(f"SET session_replication_role = {role}")
    except DatabaseError:
        return False
    return True


def service_create(*, slug: str, rate_limit: int = 0, cooldown: int = 3600, default_country: str = "US") -> Any:
    from proxy.models import Service

    return Service.objects.create(
        name=f"Bench {slug}", slug=slug, rate_limit=rate_limit, cooldown=cooldown, default_country=default_country
    )


def pool_seed(*, service: Any, country: str, count: int, base: int) -> list[str]:
    """``count`` active voice numbers of ``country`` in the service's pool, from ``base`` up."""
    from virtual_numbers.models import VirtualNumber

    insert_select(
        VirtualNumber,
        values={
            "number": ("(%s::bigint + g.i)::text", [base]),
            "country": ("%s", [country]),
            "service": ("%s", [service.pk]),
        },
        source="generate_series(0, %s - 1) AS g(i)",
        params=[count],
    )
    return [str(base + i) for i in range(count)]


def conversations_seed(
    *,
    service: Any,
    start: int,
    stop: int,
    pool: list[str],
    expires_in: dt.timedelta,
    per_seller: int = 10,
) -> None:
    """Open conversations ``start`` to ``stop - 1`` between a seller and a buyer (US).

    Conversation i: seller ``i // per_seller`` (so each seller has ``per_seller`` open
    conversations), buyer ``i`` (one each); both hold pool number ``i % per_seller``,
    which keeps (real number, proxy number) unique among active participants however
    many ranges are seeded. ``expires_in`` may be negative (already due).
    """
    from proxy.models import Conversation, Participant

    if per_seller > len(pool):
        raise ValueError("the pool needs at least per_seller numbers")
    conversation_id = f"('{UUID_PREFIX}' || lpad(to_hex(g.i), 12, '0'))::uuid"
    insert_select(
        Conversation,
        values={
            "id": conversation_id,
            "service": ("%s", [service.pk]),
            "external_id": "'order-' || g.i",
            "expires_at": ("now() + %s", [expires_in]),
            "status": "'open'",
        },
        source="generate_series(%s, %s - 1) AS g(i)",
        params=[start, stop],
    )
    # Position 0 is the buyer, 1 the seller; both dial the same pool number.
    insert_select(
        Participant,
        values={
            "conversation": conversation_id,
            "service": ("%s", [service.pk]),
            "position": "p.pos",
            "real_number": (
                "CASE WHEN p.pos = 0 THEN (%s::bigint + g.i)::text ELSE (%s::bigint + g.i / %s)::text END",
                [US_BUYER_BASE, US_SELLER_BASE, per_seller],
            ),
            "country": "'US'",
            "proxy_number": ("(%s::text[])[1 + g.i %% %s]", [pool[:per_seller], per_seller]),
            "active": "true",
        },
        source="generate_series(%s, %s - 1) AS g(i) CROSS JOIN (VALUES (0), (1)) AS p(pos)",
        params=[start, stop],
    )


def seeded_participant(i: int, *, pool: list[str], per_seller: int = 10, seller: bool = False) -> tuple[str, str]:
    """(real number, proxy number) of seeded conversation i's buyer, or its seller."""
    number = US_SELLER_BASE + i // per_seller if seller else US_BUYER_BASE + i
    return str(number), pool[i % per_seller]
