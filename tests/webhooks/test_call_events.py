"""Live call events: call.ringing, call.answered and call.completed per leg, once each, without numbers."""

from __future__ import annotations

import pytest

from proxy.models import CallbackDelivery
from tests.conftest import ALICE, BOB
from tests.webhooks.conftest import post_json

INBOUND = {"from": ALICE, "to": "12015550200", "uuid": "leg-in", "conversation_uuid": "CON-9", "direction": "inbound"}
OUTBOUND = {"from": "12015550202", "to": BOB, "uuid": "leg-out", "conversation_uuid": "CON-9", "direction": "outbound"}


@pytest.fixture
def with_callbacks(service):
    service.callback_url = "https://hooks.example.com/events"
    service.save()
    return service


def _event(client, leg, status, at, **extra):
    response = post_json(client, "/webhooks/event", {**leg, "status": status, "timestamp": at, **extra})
    assert response.status_code in (200, 204)


def _told() -> list[tuple[str, str]]:
    return [
        (d.event, d.payload["data"]["call"]["uuid"])
        for d in CallbackDelivery.objects.order_by("created_at", "pk")
        if d.event.startswith("call.")
    ]


def test_each_leg_tells_ringing_answered_and_completed_once(client, conversation, with_callbacks):
    _event(client, INBOUND, "started", "2026-01-01T10:00:00.000Z")
    _event(client, INBOUND, "ringing", "2026-01-01T10:00:00.100Z")
    _event(client, INBOUND, "answered", "2026-01-01T10:00:00.200Z")
    _event(client, OUTBOUND, "started", "2026-01-01T10:00:01.000Z")
    _event(client, OUTBOUND, "ringing", "2026-01-01T10:00:01.100Z")
    _event(client, OUTBOUND, "ringing", "2026-01-01T10:00:01.500Z")  # a second ringing event
    _event(client, OUTBOUND, "answered", "2026-01-01T10:00:05.000Z")
    _event(client, OUTBOUND, "completed", "2026-01-01T10:01:05.000Z", duration="60", price="0.01")
    _event(client, INBOUND, "completed", "2026-01-01T10:01:05.100Z", duration="65", price="0.01")
    assert _told() == [
        ("call.ringing", "leg-in"),
        ("call.answered", "leg-in"),
        ("call.ringing", "leg-out"),
        ("call.answered", "leg-out"),
        ("call.completed", "leg-out"),
        ("call.completed", "leg-in"),
    ]
    alice, bob = conversation.participants.order_by("position")
    for delivery in CallbackDelivery.objects.filter(event__startswith="call."):
        data = delivery.payload["data"]
        assert data["conversation"]["id"] == str(conversation.pk)
        assert (data["call"]["from_participant"], data["call"]["to_participant"]) == (
            str(alice.public_id),
            str(bob.public_id),
        )
        assert ALICE not in str(delivery.payload) and BOB not in str(delivery.payload)


def test_out_of_order_and_repeated_events_still_tell_each_once(client, conversation, with_callbacks):
    _event(client, INBOUND, "answered", "2026-01-01T10:00:00.200Z")
    _event(client, INBOUND, "ringing", "2026-01-01T10:00:00.100Z")
    _event(client, INBOUND, "answered", "2026-01-01T10:00:00.200Z")  # the same event again
    assert sorted(_told()) == [("call.answered", "leg-in"), ("call.ringing", "leg-in")]


def test_calls_of_no_conversation_tell_nothing(client, with_callbacks):
    _event(client, {**INBOUND, "from": "12015550177"}, "ringing", "2026-01-01T10:00:00.100Z")
    assert _told() == []
