"""The route table (PostgreSQL, migration 0018) holds exactly the answer's join, after every
kind of write: creation, a participant's change, the conversation's change, close, the
expiry sweep, deletion, TRUNCATE, and two transactions writing one conversation at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from proxy import selectors
from proxy.models import Conversation, Participant
from proxy.selectors import route_for_call
from proxy.services import conversation_close, conversation_update, conversations_expire_due
from proxy.validation import participant_validation_record
from tests.conftest import ALICE, BOB

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the route table is PostgreSQL's"),
]

_JOIN = """
SELECT DISTINCT ON (caller.id) caller.real_number, caller.proxy_number, caller.id, caller.public_id,
    {callee}, {conversation}
FROM proxy_participant AS caller
JOIN proxy_participant AS callee ON callee.conversation_id = caller.conversation_id AND callee.id <> caller.id
JOIN proxy_conversation AS conversation ON conversation.id = caller.conversation_id
WHERE caller.active AND caller.routes_by_pair AND callee.active
ORDER BY caller.id, callee.id
"""


def _columns(prefix: str, alias: str, fields: list) -> str:
    return ", ".join(f'{alias}."{f.column}"' if not prefix else f'{alias}."{prefix}{f.column}"' for f in fields)


def _table_and_join(using: str = "default") -> tuple[list[tuple], list[tuple]]:
    join = _JOIN.format(
        callee=_columns("", "callee", selectors._CALLEE_FIELDS),
        conversation=_columns("", "conversation", selectors._CONVERSATION_FIELDS),
    )
    table = (
        "SELECT caller_real_number, caller_proxy_number, caller_id, caller_public_id, "  # noqa: S608
        f"{_columns('callee_', 'route', selectors._CALLEE_FIELDS)}, "
        f"{_columns('conversation_', 'route', selectors._CONVERSATION_FIELDS)} FROM proxy_route AS route "
        "ORDER BY caller_id"
    )
    with connections[using].cursor() as cursor:
        cursor.execute(table)
        in_table = cursor.fetchall()
        cursor.execute(join)
        in_join = cursor.fetchall()
    return in_table, in_join


def assert_in_step(using: str = "default") -> list[tuple]:
    in_table, in_join = _table_and_join(using)
    assert in_table == in_join
    return in_table


def test_its_columns_are_the_models(db) -> None:
    """A field added to Participant (or read of Conversation) needs a migration of the table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'proxy_route' ORDER BY column_name"
        )
        columns = {row[0] for row in cursor.fetchall()}
    expected = {"caller_real_number", "caller_proxy_number", "caller_id", "caller_public_id"}
    expected |= {f"callee_{f.column}" for f in Participant._meta.concrete_fields}
    expected |= {f"conversation_{f.column}" for f in selectors._CONVERSATION_FIELDS}
    assert columns == expected


def test_creation_then_changes_then_close(conversation) -> None:
    rows = assert_in_step()
    assert {row[0] for row in rows} == {ALICE, BOB}

    alice = conversation.participants.get(real_number=ALICE)
    participant_validation_record(participant=alice, valid=True, number_type="mobile")
    rows = assert_in_step()
    # BOB's route carries ALICE as its callee, with what Number Insight said.
    bob_route = next(row for row in rows if row[0] == BOB)
    assert "mobile" in bob_route

    later = timezone.now() + timedelta(hours=5)
    conversation_update(conversation=conversation, ttl=5 * 3600)
    rows = assert_in_step()
    assert all(abs((row[-4] - later).total_seconds()) < 60 for row in rows)  # conversation_expires_at

    conversation_close(conversation=conversation)
    assert assert_in_step() == []
    assert route_for_call(caller=ALICE, proxy_number="12015550200").kind != "connect"


def test_expiry_sweep_and_deletion(conversation) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert len(assert_in_step()) == 2  # expired but not yet written down: the answer says "ended"
    conversations_expire_due()
    assert assert_in_step() == []

    Participant.objects.filter(conversation=conversation).update(active=True)
    assert len(assert_in_step()) == 2
    Participant.objects.filter(conversation=conversation).delete()
    assert assert_in_step() == []


@pytest.mark.django_db(transaction=True)
def test_truncate_empties_it(conversation) -> None:
    """(In a transaction of its own: TRUNCATE refuses a table with pending deferred checks.)"""
    assert len(assert_in_step()) == 2
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE proxy_participant CASCADE")
    assert assert_in_step() == []


def _another_backend_waits_for_a_lock() -> bool:
    """Whether another backend of this database waits for a lock, asked until it does (10 s at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # Statistics are read once per transaction unless the snapshot is dropped.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
    return False


@pytest.mark.django_db(transaction=True)
def test_two_transactions_writing_one_conversation(conversation) -> None:
    """Each recomputes the conversation's routes after the other's commit: neither change is lost."""
    alice = conversation.participants.get(real_number=ALICE)
    bob = conversation.participants.get(real_number=BOB)
    first_wrote = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            first_wrote.wait(10)
            # Blocks in the trigger until the first transaction commits, then sees its change.
            Participant.objects.filter(pk=bob.pk).update(name="Bob B.")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_writer)
    thread.start()
    with transaction.atomic():
        Participant.objects.filter(pk=alice.pk).update(name="Alice A.")
        first_wrote.set()
        assert _another_backend_waits_for_a_lock(), f"the second writer was not held back: {errors}"
        assert thread.is_alive()
    thread.join(10)
    assert not thread.is_alive() and not errors
    rows = assert_in_step()
    names = {row[0]: row[4 + [f.attname for f in selectors._CALLEE_FIELDS].index("name")] for row in rows}
    assert names == {ALICE: "Bob B.", BOB: "Alice A."}


def test_rebuild_after_writes_with_the_triggers_off(conversation) -> None:
    """A bulk load with session_replication_role = replica skips the triggers: the rebuild
    (the benchmarks' seed calls it) makes the table from the tables again."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM proxy_route")
        assert _table_and_join()[0] == []
        cursor.execute("SELECT proxy_route_rebuild()")
        assert cursor.fetchone()[0] == 2
    assert len(assert_in_step()) == 2
