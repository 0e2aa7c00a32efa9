"""proxy.selectors builds model instances from raw rows without Model.__init__ when nothing
listens for its signals; they must be the instances the ORM would load."""

from __future__ import annotations

import functools

import pytest
from django.db.models import signals

from proxy.models import Conversation, Participant, Service
from proxy.selectors import route_for_call
from tests.conftest import ALICE, BOB
from tests.test_postgres_backend import _lean_statements

# In a transaction the route is read by a cursor; outside one, as the answer webhook reads
# it, by the PostgreSQL backend's lean read (config.postgres fetch_row). Both must agree.
both_ways = pytest.mark.parametrize(
    "outside_a_transaction",
    [
        pytest.param(False, marks=pytest.mark.django_db, id="cursor"),
        pytest.param(True, marks=pytest.mark.django_db(transaction=True), id="lean"),
    ],
)


def _lean_reads() -> int:
    """How many statements the lean read prepared on this connection (PostgreSQL)."""
    from django.db import connection

    return len(_lean_statements(connection))


def _postgres_read_the_lean_way(outside_a_transaction: bool) -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        assert (_lean_reads() > 0) is outside_a_transaction


def _as_loaded(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@both_ways
def test_the_route_read_loads_what_the_orm_loads(outside_a_transaction, conversation, service):
    route = route_for_call(caller=ALICE, proxy_number="12015550200")
    _postgres_read_the_lean_way(outside_a_transaction)
    assert route.kind == "connect"
    callee = route.callee
    assert _as_loaded(callee) == _as_loaded(Participant.objects.get(real_number=BOB))
    assert _as_loaded(callee.service) == _as_loaded(Service.objects.get(pk=service.pk))
    # Again, now that this process holds the service's row (PostgreSQL): the same values.
    again = route_for_call(caller=ALICE, proxy_number="12015550200")
    assert _as_loaded(again.service) == _as_loaded(callee.service)
    assert again.service is not callee.service
    assert callee._state.adding is False and callee._state.db == "default"
    # The conversation is read in part; the rest loads on first use, as with .only().
    stored = Conversation.objects.get(pk=conversation.pk)
    assert route.conversation.expires_at == stored.expires_at
    assert route.conversation.metadata == stored.metadata
    # The instances behave as loaded ones: saving one updates, never inserts.
    callee.service.name = "Renamed"
    callee.service.save(update_fields=["name"])
    assert Service.objects.get(pk=service.pk).name == "Renamed"
    assert Service.objects.count() == 1


@pytest.mark.django_db
def test_a_model_with_init_listeners_is_loaded_through_init(conversation):
    seen: list[object] = []

    def listener(sender, instance, **kwargs):
        seen.append(instance)

    signals.post_init.connect(listener, sender=Participant)
    try:
        route = route_for_call(caller=ALICE, proxy_number="12015550200")
    finally:
        signals.post_init.disconnect(listener, sender=Participant)
    assert route.callee in seen


@both_ways
def test_a_changed_service_is_seen_by_the_next_route(outside_a_transaction, conversation, service):
    """The route's service is this process's copy only while its row is unchanged (PostgreSQL:
    by row version), whichever way it changed, even inside one transaction."""
    assert route_for_call(caller=ALICE, proxy_number="12015550200").service.greeting_text == ""
    _postgres_read_the_lean_way(outside_a_transaction)
    Service.objects.filter(pk=service.pk).update(greeting_text="Hello there")
    assert route_for_call(caller=ALICE, proxy_number="12015550200").service.greeting_text == "Hello there"
    service.refresh_from_db()
    service.intercept_url = "https://hooks.example.com/intercept"
    service.save()
    route = route_for_call(caller=ALICE, proxy_number="12015550200")
    assert route.service.intercept_url == "https://hooks.example.com/intercept"
    assert route.service.greeting_text == "Hello there"
    # Each route gets an instance of its own: changing one leaves the next alone.
    route.service.greeting_text = "changed in memory"
    assert route_for_call(caller=ALICE, proxy_number="12015550200").service.greeting_text == "Hello there"


@pytest.mark.django_db
def test_a_version_dropped_by_another_thread_is_read_again(conversation, service, monkeypatch):
    """Threaded servers: the read named a version this process held, and another thread
    dropped it before the row came back. The service is then read whole, not lost."""
    from django.db import connection

    from proxy import selectors

    if connection.vendor != "postgresql":
        pytest.skip("the service's row version is PostgreSQL's")
    route_for_call(caller=ALICE, proxy_number="12015550200")
    held = selectors._held_versions()
    assert held != ";"  # the first route left this process holding the service's version
    selectors._service_rows.clear()
    selectors._service_versions.clear()
    monkeypatch.setattr(selectors, "_held_versions", functools.cache(lambda: held))
    route = route_for_call(caller=ALICE, proxy_number="12015550200")
    assert route.kind == "connect"
    assert _as_loaded(route.service) == _as_loaded(Service.objects.get(pk=service.pk))


@pytest.fixture
def without_prepared_statements():
    """The default connection as with DB_PREPARED_STATEMENTS off: parameters bound on the
    client (psycopg's ClientCursor, which reads text results only), nothing prepared."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    from django.db.backends.postgresql.base import Cursor

    options = connection.settings_dict["OPTIONS"]
    saved = dict(options)
    options.pop("server_side_binding", None)
    options.pop("prepare_threshold", None)
    # What a connection made with these options has (inside a test's transaction it cannot
    # be made anew).
    connection.ensure_connection()
    psycopg_connection = connection.connection
    factory, threshold = psycopg_connection.cursor_factory, psycopg_connection.prepare_threshold
    psycopg_connection.cursor_factory, psycopg_connection.prepare_threshold = Cursor, None
    yield
    psycopg_connection.cursor_factory, psycopg_connection.prepare_threshold = factory, threshold
    options.clear()
    options.update(saved)


@pytest.mark.parametrize("unknown_caller", [False, True], ids=["known", "unknown"])
@both_ways
def test_the_route_read_works_without_prepared_statements(
    outside_a_transaction, unknown_caller, without_prepared_statements, conversation
):
    caller = "12015550999" if unknown_caller else ALICE
    route = route_for_call(caller=caller, proxy_number="12015550200")
    assert route.kind == ("unknown" if unknown_caller else "connect")
    assert route.service == conversation.service
    assert _lean_reads() == 0


@both_ways
def test_the_other_routes_are_read_alike(outside_a_transaction, conversation, service):
    """Strangers, numbers nobody owns, pairs cooling down and PIN numbers: the number's read."""
    from proxy.services import conversation_close
    from tests.factories import ParticipantFactory, VirtualNumberFactory

    assert route_for_call(caller="12015550999", proxy_number="12015550200").kind == "unknown"
    assert route_for_call(caller=ALICE, proxy_number="12015550777") == route_for_call(caller=ALICE, proxy_number=None)
    pin_number = VirtualNumberFactory(service=service, number="12015550300")
    ParticipantFactory(conversation=conversation, proxy_number=pin_number, pin="123456")
    pin_route = route_for_call(caller="12015550999", proxy_number="12015550300")
    assert (pin_route.kind, pin_route.service) == ("pin", service)
    conversation_close(conversation=conversation)
    ended = route_for_call(caller=ALICE, proxy_number="12015550200")
    assert (ended.kind, ended.service) == ("ended", service)
    _postgres_read_the_lean_way(outside_a_transaction)
