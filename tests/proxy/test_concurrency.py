"""Many requests for the same person at once, on PostgreSQL where they really run in parallel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from proxy import pins, services
from proxy.errors import PoolExhausted
from proxy.models import Participant, Service
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


def _create_all_at_once(service, count: int) -> list[str]:
    """``count`` conversations of different people created by as many threads at the same moment."""
    barrier = threading.Barrier(count)

    def create(i: int) -> str:
        try:
            barrier.wait(timeout=30)
            conversation_create(
                service=service,
                participants=[{"number": f"120155501{10 + i:02d}"}, {"number": f"120155502{10 + i:02d}"}],
                notify=False,
            )
            return "created"
        except PoolExhausted:
            return "409"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(create, range(count)))


def _open_pins_on(number: str) -> list[str]:
    return list(Participant.objects.filter(proxy_number=number, active=True).values_list("pin", flat=True))


def test_concurrent_pin_draws_never_share_a_pin_on_one_number_and_are_retried(require_postgres, monkeypatch):
    """Every creation draws 111111 first, and all of them have chosen it before any inserts:
    one wins it, the others hit the unique index, retry and draw again. All of them open;
    no PIN appears twice on the one number."""
    service = ServiceFactory(slug="pins", pin_mode=Service.PinMode.ALWAYS)
    VirtualNumberFactory(service=service, number="12015550200")
    real_draw, real_pins_for = pins.pin_draw, services._pins_for
    fresh: set[int] = set()  # threads whose next draw is their attempt's first
    attempts: list[int] = []
    chosen_together = threading.Barrier(THREADS)

    def draw() -> str:
        if threading.get_ident() in fresh:
            fresh.discard(threading.get_ident())
            return "111111"
        return real_draw()

    def pins_for(**kwargs):
        fresh.add(threading.get_ident())
        attempts.append(threading.get_ident())
        chosen = real_pins_for(**kwargs)
        if attempts.count(threading.get_ident()) == 1:
            chosen_together.wait(timeout=30)  # nobody inserts before everybody has chosen
        return chosen

    monkeypatch.setattr("proxy.pins.pin_draw", draw)
    monkeypatch.setattr("proxy.services._pins_for", pins_for)

    outcomes = _create_all_at_once(service, THREADS)

    assert outcomes == ["created"] * THREADS
    held = _open_pins_on("12015550200")
    assert len(held) == 2 * THREADS and len(set(held)) == len(held)
    assert held.count("111111") == 1
    # Each loser was refused by the index once and retried.
    assert len(attempts) == 2 * THREADS - 1


def test_the_database_alone_refuses_a_duplicate_pin_under_concurrency(require_postgres, monkeypatch):
    """With the chooser made to hand every creation the same PIN, the unique index is all that
    stands: exactly one conversation gets it, the others end in a clean 409."""
    service = ServiceFactory(slug="same-pin", pin_mode=Service.PinMode.ALWAYS)
    VirtualNumberFactory(service=service, number="12015550200")
    monkeypatch.setattr(
        "proxy.services.pins_choose",
        lambda *, proxy_numbers, now: ["222222", *[f"3{threading.get_ident() % 100000:05d}"][: len(proxy_numbers) - 1]],
    )

    outcomes = _create_all_at_once(service, THREADS)

    assert outcomes.count("created") == 1 and outcomes.count("409") == THREADS - 1
    assert _open_pins_on("12015550200").count("222222") == 1
