"""config.postgres: the persistent connection's health check asks the socket, not the server."""

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
