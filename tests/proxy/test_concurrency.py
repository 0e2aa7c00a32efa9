"""Many requests for the same person at once, on PostgreSQL where they really run in parallel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from proxy.errors import PoolExhausted
from proxy.models import Participant
from proxy.services import conversation_create
from tests.conftest import ALICE
from tests.factories import ServiceFactory, VirtualNumberFactory

pytestmark = pytest.mark.postgres

THREADS = 12
POOL = 4


@pytest.fixture
def require_postgres(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite admits one writer at a time, so nothing runs concurrently")


def test_concurrent_creations_for_one_person_never_share_a_number(require_postgres):
    service = ServiceFactory(slug="rush", cooldown=0)
    for i in range(POOL):
        VirtualNumberFactory(service=service, number=f"120155502{i:02d}")
    barrier = threading.Barrier(THREADS)

    def create(i: int) -> str:
        try:
            barrier.wait(timeout=30)
            conversation_create(
                service=service,
                participants=[{"number": ALICE}, {"number": f"120155501{10 + i:02d}"}],
                notify=False,
            )
            return "created"
        except PoolExhausted:
            return "409"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(create, range(THREADS)))

    # Every outcome is a creation or a clean 409; anything else would have raised here.
    assert outcomes.count("created") == POOL
    assert outcomes.count("409") == THREADS - POOL
    alice = list(Participant.objects.filter(real_number=ALICE, active=True).values_list("proxy_number_id", flat=True))
    assert len(alice) == len(set(alice)) == POOL
