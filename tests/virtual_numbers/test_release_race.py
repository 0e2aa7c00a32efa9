"""Releasing or moving a number while a conversation is being given it, on PostgreSQL.

The conversation's transaction is held open after its participants are inserted (it
holds the foreign key's share lock on the number's row); the release or move must wait
for it and then see the conversation, not count before it commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections

from proxy.models import Conversation
from proxy.services import conversation_create
from tests.conftest import ALICE, BOB
from tests.factories import ServiceFactory, VirtualNumberFactory
from tests.virtual_numbers.fake_provider import FakeProvider
from virtual_numbers import services
from virtual_numbers.models import VirtualNumber

pytestmark = pytest.mark.postgres

DEADLINE = 30.0


@pytest.fixture
def require_postgres(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite admits one writer at a time, so nothing runs concurrently")


def _until(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` until it holds or the deadline passes; returns whether it held."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.02)
    return False


def _someone_waits_to_lock_a_row() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE %s",
            ["%FOR UPDATE%"],
        )
        return cursor.fetchone()[0] > 0


def _take_the_key_lock_now() -> None:
    """Check the creation's deferred foreign keys now, which locks the chosen numbers' rows.

    Django creates foreign keys DEFERRABLE INITIALLY DEFERRED, so a plain participant
    insert locks the number's row only at commit. The allocation must take that lock
    before its re-check, which proxy.services does; this takes it earlier, from inside the hook.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _race(*, monkeypatch: pytest.MonkeyPatch, change: str, key_lock: bool) -> dict[str, Any]:
    """Create a conversation on the only pool number, hold its transaction open, then release or move the number."""
    service = ServiceFactory(slug="race", cooldown=0)
    other = ServiceFactory(slug="elsewhere")
    number = VirtualNumberFactory(service=service, number="12015550250")
    provider = FakeProvider()
    inserted, proceed = threading.Event(), threading.Event()

    def held_open(conversation: Conversation, *, notify: bool, participants: Any) -> list[Any]:
        # Runs inside the creation transaction, after the participants were inserted and re-checked.
        if key_lock:
            _take_the_key_lock_now()
        inserted.set()
        if not proceed.wait(timeout=DEADLINE * 2):
            raise AssertionError("the test never let the creation finish")
        return []

    monkeypatch.setattr("proxy.side_effects.conversation_opened", held_open)

    def create() -> Conversation:
        try:
            return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
        finally:
            connections.close_all()

    def change_number() -> Any:
        try:
            if change == "release":
                return services.number_release(number=number, provider=provider)
            return services.number_move(number=number, service=other)
        except services.NumberInUse as exc:
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        creating = pool.submit(create)
        try:
            assert inserted.wait(timeout=DEADLINE), "the conversation was never created"
            changing = pool.submit(change_number)
            # Either the change waits for the creation's transaction, or it went ahead without waiting.
            waited = _until(lambda: changing.done() or _someone_waits_to_lock_a_row()) and not changing.done()
            state_while_waiting = VirtualNumber.objects.get(pk=number.pk).state
        finally:
            proceed.set()
        outcome = changing.result(timeout=DEADLINE)
        conversation = creating.result(timeout=DEADLINE)
    number.refresh_from_db()
    return {
        "waited": waited,
        "state_while_waiting": state_while_waiting,
        "outcome": outcome,
        "number": number,
        "service": service,
        "provider": provider,
        "conversation": conversation,
    }


def _assert_refused_and_untouched(race: dict[str, Any], change: str) -> None:
    assert race["waited"], f"the {change} did not wait for the conversation's transaction"
    outcome, number = race["outcome"], race["number"]
    assert isinstance(outcome, services.NumberInUse), f"the {change} went ahead: {outcome!r}"
    assert "used by 1 open conversation" in str(outcome)
    assert (number.state, number.service) == (VirtualNumber.State.ACTIVE, race["service"])
    assert race["provider"].calls == []
    assert set(race["conversation"].participants.values_list("proxy_number", flat=True)) == {number.number}
    if change == "release":
        # No new allocation could take the number while the release was deciding.
        assert race["state_while_waiting"] == VirtualNumber.State.DRAINING


@pytest.mark.parametrize("change", ["release", "move"])
def test_release_and_move_wait_for_a_creation_holding_the_numbers_key_lock(require_postgres, monkeypatch, change):
    race = _race(monkeypatch=monkeypatch, change=change, key_lock=True)
    _assert_refused_and_untouched(race, change)


@pytest.mark.parametrize("change", ["release", "move"])
def test_release_and_move_wait_for_a_conversation_being_created(require_postgres, monkeypatch, change):
    race = _race(monkeypatch=monkeypatch, change=change, key_lock=False)
    _assert_refused_and_untouched(race, change)
