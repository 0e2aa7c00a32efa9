"""config.postgres: the persistent connection's health check asks the socket, not the server;
``fetch_row`` reads one row through libpq, as a cursor would have read it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the backend is PostgreSQL's")
    other = connections.create_connection("default")
    yield other
    other.close()


def _backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_live_idle_connection_is_usable_without_a_round_trip(postgres):
    _backend_pid(postgres)
    assert postgres.is_usable()
    # No statement went to the server: the last thing it saw is still the pid query.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s",
            [postgres.connection.info.backend_pid],
        )
        assert cursor.fetchone()[0].strip() == "SELECT pg_backend_pid()"


def test_a_terminated_backend_is_not_usable_and_the_next_request_reconnects(postgres):
    pid = _backend_pid(postgres)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone()[0] is True
    # The server's notice, then the end of the stream, arrive on the idle socket.
    import select

    select.select([postgres.connection.pgconn.socket], [], [], 5)
    assert not postgres.is_usable()
    # What Django does when a request starts (CONN_HEALTH_CHECKS): drop it, then connect anew.
    postgres.health_check_enabled = True
    postgres.health_check_done = False
    postgres.close_if_health_check_failed()
    assert postgres.connection is None
    assert _backend_pid(postgres) != pid


def test_a_connection_left_in_a_failed_transaction_is_not_usable(postgres):
    _backend_pid(postgres)
    postgres.connection.autocommit = False
    with pytest.raises(psycopg.errors.DivisionByZero), postgres.connection.cursor() as cursor:
        cursor.execute("SELECT 1/0")
    assert not postgres.is_usable()
    postgres.connection.rollback()
    assert postgres.is_usable()


def test_closed_connections_are_not_usable(postgres):
    _backend_pid(postgres)
    postgres.connection.close()
    assert not postgres.is_usable()


# --- fetch_row: one row through libpq, outside a transaction (issue 17) ---------------------------

_TYPES_SQL = """
SELECT %s::bigint, %s::uuid, %s::timestamptz, %s, %s::boolean, %s::numeric(10, 4), NULL::text, %s::date
"""
_TYPES_PARAMS = [
    "9007199254740993",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "2026-12-03 11:45:25.123456+00",
    "naïve ☎ text",
    "true",
    "12.3400",
    "2026-02-28",
]


def _cursor_row(wrapper, sql, params):
    with wrapper.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _lean_statements(wrapper) -> list[str]:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'fetch_row_%%' ORDER BY name")
        return [row[0] for row in cursor.fetchall()]


def test_fetch_row_gives_what_a_cursor_gives_through_one_prepared_statement(postgres):
    row = postgres.fetch_row(_TYPES_SQL, _TYPES_PARAMS)
    assert row == _cursor_row(postgres, _TYPES_SQL, _TYPES_PARAMS)
    assert [type(value).__name__ for value in row] == [
        "int", "UUID", "datetime", "str", "bool", "Decimal", "NoneType", "date",
    ]  # fmt: skip
    assert row[2].utcoffset().total_seconds() == 0
    assert postgres.fetch_row(_TYPES_SQL, _TYPES_PARAMS) == row
    assert _lean_statements(postgres) == ["fetch_row_0"]
    assert postgres.fetch_row("SELECT 1 WHERE %s = 'x'", ["y"]) is None
    assert _lean_statements(postgres) == ["fetch_row_0", "fetch_row_1"]


def test_fetch_row_prepares_again_a_statement_the_server_forgot(postgres):
    assert postgres.fetch_row("SELECT %s::int + 1", ["41"]) == (42,)
    with postgres.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert _lean_statements(postgres) == []
    assert postgres.fetch_row("SELECT %s::int + 1", ["41"]) == (42,)
    assert _lean_statements(postgres) == ["fetch_row_0"]


def test_fetch_row_on_a_new_connection_prepares_anew(postgres):
    assert postgres.fetch_row("SELECT %s::int * 2", ["21"]) == (42,)
    postgres.close()
    assert postgres.fetch_row("SELECT %s::int * 2", ["21"]) == (42,)
    assert _lean_statements(postgres) == ["fetch_row_0"]


def test_fetch_row_without_prepared_statements_prepares_nothing(postgres):
    postgres.settings_dict = {**postgres.settings_dict, "OPTIONS": {**postgres.settings_dict["OPTIONS"]}}
    postgres.settings_dict["OPTIONS"].pop("server_side_binding", None)
    postgres.close()
    assert postgres.fetch_row(_TYPES_SQL, _TYPES_PARAMS) == _cursor_row(postgres, _TYPES_SQL, _TYPES_PARAMS)
    assert _lean_statements(postgres) == []


def test_fetch_row_errors_are_django_errors_and_leave_the_connection_usable(postgres):
    from django.db import DataError, ProgrammingError

    with pytest.raises(DataError):
        postgres.fetch_row("SELECT 1 / %s::int", ["0"])
    with pytest.raises(ProgrammingError):
        postgres.fetch_row("SELECT no_such_column FROM pg_class WHERE relname = %s", ["x"])
    assert postgres.is_usable()
    assert postgres.fetch_row("SELECT %s::int", ["7"]) == (7,)


def test_fetch_row_on_a_lost_connection_raises_and_marks_it_for_closing(postgres):
    from django.db import OperationalError

    assert postgres.fetch_row("SELECT %s::int", ["1"]) == (1,)
    pid = postgres.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    postgres.errors_occurred = False
    with pytest.raises(OperationalError):
        postgres.fetch_row("SELECT %s::int", ["1"])
    assert postgres.errors_occurred
    # At the end of the request Django checks the connection and drops it.
    postgres.close_if_unusable_or_obsolete()
    assert postgres.connection is None


def test_fetch_row_leaves_transactions_and_logged_queries_to_a_cursor(postgres):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(postgres) as queries:
        assert postgres.fetch_row("SELECT %s::int", ["3"]) == (3,)
    assert [query["sql"] for query in queries] == ["SELECT '3'::int"]
    postgres.set_autocommit(False)
    try:
        assert postgres.fetch_row("SELECT %s::int", ["4"]) == (4,)
        # psycopg began the transaction, as for any query in one.
        assert postgres.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        postgres.rollback()
        postgres.set_autocommit(True)
    assert _lean_statements(postgres) == []


def test_fetch_row_takes_plain_placeholders_only(postgres):
    with pytest.raises(ValueError, match="placeholders"):
        postgres.fetch_row("SELECT 100 %% %s::int", ["7"])
