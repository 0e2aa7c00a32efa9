"""POST and GET /api/v1/conversations/{id}/messages, exactly as the contract says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from proxy.api_keys import api_key_create
from proxy.messaging import MAX_TEXT, number_opt_out
from proxy.models import Conversation, Message
from proxy.services import conversation_close
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory, VirtualNumberFactory
from tests.proxy.messages_helpers import alice_and_bob

pytestmark = pytest.mark.django_db

FIELDS = {"id", "from_participant", "to_participant", "status", "text", "created_at"}


@pytest.fixture
def pair(service, pool):
    return alice_and_bob(service, pool)


def _url(conversation) -> str:
    return f"/api/v1/conversations/{conversation.pk}/messages"


def _post(api, conversation, body, capture=None):
    if capture is None:
        return api.post(_url(conversation), body, format="json")
    with capture(execute=True):
        return api.post(_url(conversation), body, format="json")


def test_the_service_texts_a_participant_from_their_proxy_number(api, pair, django_capture_on_commit_callbacks):
    conversation, _, bob = pair
    response = _post(api, conversation, {"to_participant": str(bob.public_id), "text": "Your driver is here."},
                     django_capture_on_commit_callbacks)  # fmt: skip
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == FIELDS
    assert (body["from_participant"], body["to_participant"], body["status"]) == (None, str(bob.public_id), "queued")
    assert body["text"] == "Your driver is here."
    sent = SandboxMessage.objects.get()
    assert (sent.from_number, sent.to_number, sent.text) == (bob.proxy_number_id, BOB, "Your driver is here.")
    assert Message.objects.get(pk=body["id"]).status == "sent"


def test_a_unicode_text_goes_as_unicode(api, pair, django_capture_on_commit_callbacks):
    conversation, alice, _ = pair
    text = "Votre chauffeur est là 🚕"
    assert _post(api, conversation, {"to_participant": str(alice.public_id), "text": text},
                 django_capture_on_commit_callbacks).status_code == 202  # fmt: skip
    sent = SandboxMessage.objects.get()
    assert (sent.text, sent.message_type) == (text, "unicode")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "hi"}, "to_participant"),
        ({"to_participant": "00000000-0000-4000-8000-000000000000", "text": "hi"}, "to_participant"),
        ({"to_participant": 999999, "text": "hi"}, "to_participant"),
        ({"to_participant": "abc", "text": "hi"}, "to_participant"),
        ({"to_participant": "BOB"}, "text"),
        ({"to_participant": "BOB", "text": ""}, "text"),
        ({"to_participant": "BOB", "text": "   "}, "text"),
        ({"to_participant": "BOB", "text": "x" * (MAX_TEXT + 1)}, "text"),
        ({"to_participant": "BOB", "text": "a\x00b"}, "text"),
        ({"to_participant": "BOB", "text": 42}, None),
    ],
)
def test_bad_input_is_400_naming_the_field(api, pair, body, field):
    conversation, _, bob = pair
    body = {k: (str(bob.public_id) if v == "BOB" else v) for k, v in body.items()}
    response = _post(api, conversation, body)
    if field is None:  # a number is read as its text, as DRF does
        assert response.status_code == 202
        return
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Message.objects.exists()


def test_a_participant_of_another_conversation_is_refused(api, pair, service, pool):
    conversation, _, _ = pair
    other = ConversationFactory(service=service)
    stranger = ParticipantFactory(conversation=other, real_number=CAROL, proxy_number=pool[1])
    response = _post(api, conversation, {"to_participant": str(stranger.public_id), "text": "hi"})
    assert response.status_code == 400 and "to_participant" in response.json()


@pytest.mark.parametrize("how", ["closed", "expired"])
def test_an_ended_conversation_is_409(api, pair, how):
    conversation, alice, _ = pair
    if how == "closed":
        conversation_close(conversation=conversation)
    else:
        Conversation.objects.filter(pk=conversation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _post(api, conversation, {"to_participant": str(alice.public_id), "text": "hi"})
    assert response.status_code == 409
    assert response.json()["code"] == "conversation_ended"
    assert not Message.objects.exists()


def test_a_participant_who_opted_out_gets_nothing(api, pair, service, django_capture_on_commit_callbacks):
    conversation, alice, _ = pair
    number_opt_out(service=service, real_number=ALICE)
    response = _post(
        api, conversation, {"to_participant": str(alice.public_id), "text": "hi"}, django_capture_on_commit_callbacks
    )
    assert response.status_code == 202 and response.json()["status"] == "failed"
    assert not SandboxMessage.objects.exists()


def test_another_services_conversation_is_404(pair):
    conversation, alice, _ = pair
    other = ServiceFactory(slug="other")
    VirtualNumberFactory(service=other)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(service=other)[1]}")
    assert client.get(_url(conversation)).status_code == 404
    assert (
        client.post(
            _url(conversation), {"to_participant": str(alice.public_id), "text": "hi"}, format="json"
        ).status_code
        == 404
    )
    assert client.put(_url(conversation), {}, format="json").status_code == 404
    assert not Message.objects.exists()


def test_the_list_is_newest_first_and_paginated(api, pair, service):
    conversation, alice, bob = pair
    now = timezone.now()
    rows = []
    for n in range(3):
        rows.append(
            Message.objects.create(
                kind="relay", service=service, conversation=conversation, from_participant=alice, to_participant=bob,
                from_number=bob.proxy_number_id, to_number=BOB, text=f"text {n}", status="delivered",
                created_at=now - timedelta(minutes=10 - n),
            )
        )  # fmt: skip
    Message.objects.create(
        kind="platform", service=service, conversation=conversation, to_participant=alice,
        from_number=alice.proxy_number_id, to_number=ALICE, text="from the service", created_at=now,
    )  # fmt: skip
    held = Message.objects.create(
        kind="relay", service=service, conversation=conversation, from_participant=bob, to_participant=alice,
        text="spam", status="held", created_at=now - timedelta(minutes=30),
    )  # fmt: skip
    # Not listed: a STOP keyword kept in the conversation, and texts of other conversations.
    Message.objects.create(kind="inbound", status="received", service=service, conversation=conversation,
                           text="STOP", created_at=now)  # fmt: skip
    response = api.get(_url(conversation), {"page_size": 2})
    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 5 and page["next"]
    assert [m["text"] for m in page["results"]] == ["from the service", "text 2"]
    assert page["results"][0]["from_participant"] is None
    rest = api.get(_url(conversation), {"page_size": 2, "page": 3}).json()["results"]
    assert rest == [
        {"id": held.pk, "from_participant": str(bob.public_id), "to_participant": str(alice.public_id),
         "status": "failed", "text": "spam", "created_at": rest[0]["created_at"]}
    ]  # fmt: skip
    for item in page["results"]:
        assert set(item) == FIELDS


def test_the_schema_documents_the_messages(api):
    openapi = APIClient().get("/api/schema/", {"format": "json"}).json()
    path = openapi["paths"]["/api/v1/conversations/{conversation_id}/messages"]
    assert set(path["post"]["responses"]) >= {"202", "400", "401", "404", "409", "429"}
    schemas = openapi["components"]["schemas"]
    assert set(schemas["MessageOutput"]["properties"]) == FIELDS
    assert set(schemas["MessageOutputStatusEnum"]["enum"]) == {"queued", "sent", "delivered", "failed"}
    assert set(schemas["MessageCreateInput"]["required"]) == {"to_participant", "text"}
