"""Django's PostgreSQL backend, with a connection health check that costs no round trip.

``CONN_HEALTH_CHECKS`` makes Django check a persistent connection before a request reuses
it, and the stock check is a ``SELECT 1``: a round trip to PostgreSQL on every request,
which was a tenth of the answer webhook's CPU (issue 17, bench/RESULTS.md). Here the check
asks the socket instead. An idle connection has nothing to read: when PostgreSQL restarts,
terminates the backend or goes away, its socket becomes readable (the termination notice,
the end of the stream, or a keepalive failure), and the connection is dropped before the
request uses it, as with ``SELECT 1``. A peer that vanished without a trace is found by TCP
keepalives (``DB_KEEPALIVES_IDLE`` in config/settings.py), which also keep a NAT gateway or
load balancer from silently dropping an idle connection.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from psycopg import pq

_IDLE = (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS)


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
