"""proxy.selectors builds model instances from raw rows without Model.__init__ when nothing
listens for its signals; they must be the instances the ORM would load."""

from __future__ import annotations

import functools

import pytest
from django.db.models import signals

from proxy.models import Conversation, Participant, Service
from proxy.selectors import route_for_call
from tests.conftest import ALICE, BOB


def _as_loaded(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@pytest.mark.django_db
def test_the_route_read_loads_what_the_orm_loads(conversation, service):
    route = route_for_call(caller=ALICE, proxy_number="12015550200")
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


@pytest.mark.django_db
def test_a_changed_service_is_seen_by_the_next_route(conversation, service):
    """The route's service is this process's copy only while its row is unchanged (PostgreSQL:
    by row version), whichever way it changed, even inside one transaction."""
    assert route_for_call(caller=ALICE, proxy_number="12015550200").service.greeting_text == ""
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
