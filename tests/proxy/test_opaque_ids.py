"""Participant ids in the API and callbacks are opaque (issue 18): sequential integers would
show every tenant the platform's volume."""

from __future__ import annotations

import uuid

import pytest

from proxy.callbacks import callback_create_for_call
from proxy.models import Call, Participant
from tests.conftest import ALICE, BOB, CAROL

URL = "/api/v1/conversations"

pytestmark = pytest.mark.django_db


def _open(api, a=ALICE, b=BOB):
    response = api.post(URL, {"participants": [{"number": a}, {"number": b}], "notify": False}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_participant_ids_are_opaque_and_reveal_no_count(api, pool):
    first = _open(api)
    second = _open(api, CAROL, BOB)
    ids = [p["id"] for body in (first, second) for p in body["participants"]]
    assert all(isinstance(value, str) for value in ids)
    assert all(uuid.UUID(value).version == 4 for value in ids)
    assert len(set(ids)) == 4
    rows = Participant.objects.filter(conversation_id=first["id"]).order_by("position")
    assert [p["id"] for p in first["participants"]] == [str(row.public_id) for row in rows]
    assert all(str(row.pk) not in ids for row in rows)


def test_calls_name_participants_by_their_opaque_ids(api, pool, service):
    body = _open(api)
    caller, callee = Participant.objects.filter(conversation_id=body["id"]).order_by("position")
    Call.objects.create(
        uuid="call-1", conversation_id=body["id"], service=service, from_participant=caller, to_participant=callee
    )
    (shown,) = api.get(f"{URL}/{body['id']}/calls").json()["results"]
    assert shown["from_participant"] == body["participants"][0]["id"]
    assert shown["to_participant"] == body["participants"][1]["id"]


def test_callbacks_name_participants_by_their_opaque_ids(api, pool, service):
    service.callback_url = "https://hooks.example.com/x"
    service.callback_secret = "s"
    service.save()
    body = _open(api)
    caller, callee = Participant.objects.filter(conversation_id=body["id"]).order_by("position")
    call = Call.objects.create(
        uuid="call-1",
        conversation_id=body["id"],
        service=service,
        from_participant=caller,
        to_participant=callee,
        status="completed",
    )
    delivery = callback_create_for_call(call=Call.objects.select_related("conversation__service").get(pk=call.pk))
    assert delivery is not None
    data = delivery.payload["data"]["call"]
    assert data["from_participant"] == str(caller.public_id) == body["participants"][0]["id"]
    assert data["to_participant"] == str(callee.public_id)


def test_the_schema_says_participant_ids_are_strings(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    participant = schema["components"]["schemas"]["ParticipantOutput"]["properties"]["id"]
    assert participant["type"] == "string"
