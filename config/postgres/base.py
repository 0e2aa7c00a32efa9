"""Django's PostgreSQL backend, with a connection health check that costs no round trip and
a lean read of one row for the answer webhook.

``CONN_HEALTH_CHECKS`` makes Django check a persistent connection before a request reuses
it, and the stock check is a ``SELECT 1``: a round trip to PostgreSQL on every request,
which was a tenth of the answer webhook's CPU (issue 17, bench/RESULTS.md). Here the check
asks the socket instead. An idle connection has nothing to read: when PostgreSQL restarts,
terminates the backend or goes away, its socket becomes readable (the termination notice,
the end of the stream, or a keepalive failure), and the connection is dropped before the
request uses it, as with ``SELECT 1``. A peer that vanished without a trace is found by TCP
keepalives (``DB_KEEPALIVES_IDLE`` in config/settings.py), which also keep a NAT gateway or
load balancer from silently dropping an idle connection.

``fetch_row`` runs one fixed statement through libpq (psycopg's ``pq`` layer) and loads
its row with psycopg's own loaders: what a cursor does, without a cursor's Python on the way
(see its docstring).
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from django.utils.asyncio import async_unsafe
from psycopg import ClientCursor, Connection, errors, pq
from psycopg.abc import Transformer as TransformerProtocol
from psycopg.adapt import Transformer
from psycopg.pq.abc import PGresult

_IDLE = (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS)
_UNDEFINED_STATEMENT = b"26000"  # invalid_sql_statement_name: e.g. after DEALLOCATE ALL or DISCARD ALL
_DUPLICATE_STATEMENT = b"42P05"


def _numbered(sql: str) -> bytes:
    """``%s`` placeholders as ``$1, $2, ...``; a statement with any other ``%`` is refused."""
    pieces = sql.split("%s")
    if any("%" in piece for piece in pieces):
        raise ValueError("fetch_row takes %s placeholders only (no %% or %(name)s)")
    numbered = pieces[0] + "".join(f"${i}{piece}" for i, piece in enumerate(pieces[1:], start=1))
    return numbered.encode()


def _binary_results(cursor: Any) -> None:
    """Ask for ``cursor``'s results in PostgreSQL's binary format (the same Python values,
    without PostgreSQL writing timestamps, UUIDs and numbers out as text and psycopg parsing
    them back), where it can: a cursor binding parameters on the client (Django's default,
    and here with ``DB_PREPARED_STATEMENTS`` off) reads text only."""
    if not isinstance(cursor.cursor, ClientCursor):
        cursor.cursor.format = pq.Format.BINARY


@dataclass
class _Lean:
    """What ``fetch_row`` keeps for one psycopg connection."""

    connection: Connection[Any]
    prepares: bool
    statements: dict[str, bytes]  # SQL -> name of its prepared statement
    loader: TransformerProtocol


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        pgconn = connection.pgconn
        if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status not in _IDLE:
            return False
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
        # Anything to read (or an error or hang-up) on an idle connection means it is over.
        return not poller.poll(0)

    @async_unsafe
    def fetch_row(self, sql: str, params: Sequence[str]) -> tuple[Any, ...] | None:
        """The first row of ``sql`` (``%s`` placeholders; every parameter a ``str``, typed by
        the server from its place) in PostgreSQL's binary format, or None: the values a
        cursor's ``fetchone()`` gives, for less than half a cursor's CPU (issue 17).

        Through a cursor, one prepared read of the answer's route cost 258,000 instructions
        of Python (callgrind): psycopg's generators and prepared-statement bookkeeping and
        Django's wrappers, around one libpq call that costs 53,000 with its row loaded. Here
        that call is made directly on Django's connection, 113,000 in all, with what Django
        does around a query kept: the health check before a request's first query, the
        connection opened when needed, async contexts and other threads refused, and errors
        raised as Django's database errors (a lost connection is then closed at the end of
        the request, as after a cursor's error).

        The statement is prepared once per connection (named ``fetch_row_N``), unless
        prepared statements are turned off (``DB_PREPARED_STATEMENTS``, for a pooler in
        transaction mode): then it is parsed on each call, as psycopg would. A statement the
        server forgot (``DEALLOCATE ALL``, ``DISCARD ALL``) is prepared again.

        Only outside a transaction (Django's autocommit, as in the answer webhook): psycopg
        deallocates every prepared statement after a rollback, and inside a transaction a
        forgotten statement would abort it. In a transaction, and wherever a cursor does
        something more (queries logged for ``DEBUG`` or ``assertNumQueries``, execute
        wrappers), a cursor runs the statement.
        """
        self.close_if_health_check_failed()
        self.ensure_connection()
        connection = self.connection
        pgconn = connection.pgconn
        if (
            not self.autocommit
            or pgconn.transaction_status != pq.TransactionStatus.IDLE
            or self.queries_logged
            or self.execute_wrappers
        ):
            with self.cursor() as cursor:
                _binary_results(cursor)
                cursor.execute(sql, params)
                return cursor.fetchone()
        # Autocommit and idle: no transaction, so none that could be broken (atomic() turns
        # autocommit off, and its reads took the cursor above).
        self.validate_thread_sharing()
        lean = self._lean_state(connection)
        values = [param.encode() for param in params]
        with self.wrap_database_errors, connection.lock:
            if lean.prepares:
                result = self._exec_prepared(lean, sql, values)
            else:
                result = pgconn.exec_params(_numbered(sql), values, result_format=pq.Format.BINARY)
            if result.status != pq.ExecStatus.TUPLES_OK:
                if pgconn.status == pq.ConnStatus.BAD:
                    # As psycopg reports it: Django then marks the connection for closing.
                    lost = result.error_message.decode(errors="replace")
                    raise errors.OperationalError(f"the connection is lost: {lost}")
                raise errors.error_from_result(result, encoding=connection.info.encoding)
            if not result.ntuples:
                return None
            lean.loader.set_pgresult(result, set_loaders=True, format=pq.Format.BINARY)
            return lean.loader.load_row(0, tuple)

    def _exec_prepared(self, lean: _Lean, sql: str, values: list[bytes]) -> PGresult:
        pgconn = lean.connection.pgconn
        name = lean.statements.get(sql)
        if name is not None:
            result = pgconn.exec_prepared(name, values, result_format=pq.Format.BINARY)
            # Outside a transaction, a statement the server forgot can be prepared again.
            if result.status != pq.ExecStatus.FATAL_ERROR or (
                result.error_field(pq.DiagnosticField.SQLSTATE) != _UNDEFINED_STATEMENT
            ):
                return result
        name = name or f"fetch_row_{len(lean.statements)}".encode()
        prepared = pgconn.prepare(name, _numbered(sql))
        if prepared.status != pq.ExecStatus.COMMAND_OK and (
            prepared.error_field(pq.DiagnosticField.SQLSTATE) != _DUPLICATE_STATEMENT
        ):
            raise errors.error_from_result(prepared, encoding=lean.connection.info.encoding)
        lean.statements[sql] = name
        return pgconn.exec_prepared(name, values, result_format=pq.Format.BINARY)

    def _lean_state(self, connection: Connection[Any]) -> _Lean:
        # Per psycopg connection: a new connection has none of the old one's statements.
        lean: _Lean | None = self.__dict__.get("_lean")
        if lean is None or lean.connection is not connection:
            lean = self._lean = _Lean(
                connection=connection,
                # As psycopg decides for a cursor's statements: parameters bound on the server
                # (Django's server_side_binding) and a prepare threshold (None: never).
                prepares=(
                    self.settings_dict["OPTIONS"].get("server_side_binding") is True
                    and connection.prepare_threshold is not None
                ),
                statements={},
                loader=Transformer(connection),
            )
        return lean
