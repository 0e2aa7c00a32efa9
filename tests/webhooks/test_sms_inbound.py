"""Inbound SMS bad input: 401 for bad signatures; everything else 2xx to Vonage, kept for audit,
never relayed wrongly, never a 5xx."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from proxy.models import CallEvent, Message
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB
from tests.proxy.messages_helpers import INBOUND_URL, alice_and_bob, inbound_params
from webhooks.payloads import inbound_sms, sms_event_key
from webhooks.signatures import sms_sign_params

pytestmark = pytest.mark.django_db

SECRET = "inbound-signature-secret"


@pytest.fixture
def pair(service, pool, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    return alice_and_bob(service, pool)


def _post(client: Client, capture, params, **kwargs):
    with capture(execute=True):
        return client.post(INBOUND_URL, params, **kwargs)


# --- Signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [None, "0" * 32, "not-hex", "x" * 5000])
def test_unsigned_or_badly_signed_is_401_and_nothing_happens(client, pair, settings, sig):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    params = inbound_params()
    if sig:
        params = {**params, "timestamp": "1764763200", "nonce": "n", "sig": sig}
    assert client.post(INBOUND_URL, params).status_code == 401
    assert not CallEvent.objects.exists() and not Message.objects.exists()


def test_a_tampered_text_is_401(client, pair, settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    signed = sms_sign_params(inbound_params(), secret=SECRET)
    assert client.post(INBOUND_URL, {**signed, "text": "send money to"}).status_code == 401
    assert not Message.objects.exists()


@pytest.mark.parametrize("method", ["md5hash", "sha256"])
def test_a_signed_text_is_relayed(client, pair, settings, method, django_capture_on_commit_callbacks):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_METHOD = method
    signed = sms_sign_params(inbound_params(text="signed ✓", type="unicode"), secret=SECRET, method=method)
    assert _post(client, django_capture_on_commit_callbacks, signed).status_code == 200
    assert SandboxMessage.objects.get().text == "signed ✓"


# --- Bad input: 2xx, kept, not relayed -----------------------------------------------------------

NOT_RELAYED = {
    "no sender": ({"msisdn": None}, "inbound", "bad_sender"),
    "no to": ({"to": None}, "inbound", "unknown_number"),
    "to outside every pool": ({"to": "447700900123"}, "inbound", "unknown_number"),
    "sender not a number": ({"msisdn": "FreeMoney"}, "inbound", "bad_sender"),
    "sender too short": ({"msisdn": "12"}, "inbound", "bad_sender"),
    "no text": ({"text": None}, "relay", "no_text"),
    "empty text": ({"text": ""}, "relay", "no_text"),
    "10,000 characters": ({"text": "x" * 10_000}, "relay", "too_long"),
    "binary": ({"type": "binary", "text": None, "data": "0011AABB", "udh": "050003CC0201"}, "relay", "binary"),
}


@pytest.mark.parametrize("case", NOT_RELAYED, ids=list(NOT_RELAYED))
def test_bad_input_is_kept_and_not_relayed(client, pair, case, django_capture_on_commit_callbacks):
    changes, kind, reason = NOT_RELAYED[case]
    params = inbound_params()
    params.pop("keyword", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    response = _post(client, django_capture_on_commit_callbacks, params)
    assert response.status_code == 200
    assert not SandboxMessage.objects.exists()
    event = CallEvent.objects.get(source="sms-inbound")
    assert event.payload.get("text") == params.get("text")  # the whole of it, for audit
    message = Message.objects.get()
    assert (message.kind, message.reason) == (kind, reason)
    assert message.status in ("received", "failed")
    assert len(message.text) <= 1600


def test_a_relayed_text_of_a_bad_kind_is_listed_as_failed(client, pair, api, django_capture_on_commit_callbacks):
    conversation, _, _ = pair
    _post(client, django_capture_on_commit_callbacks, inbound_params(text="x" * 10_000))
    listed = api.get(f"/api/v1/conversations/{conversation.pk}/messages").json()["results"]
    assert [m["status"] for m in listed] == ["failed"]


@pytest.mark.parametrize(
    "body",
    [
        {"msisdn": 12015550101, "to": 12015550200, "text": "numbers as JSON numbers", "messageId": "J1"},
        {"msisdn": ALICE, "to": "12015550200", "text": {"nested": ["object"]}, "messageId": "J2"},
        {"msisdn": ALICE, "to": "12015550200", "text": "nul \u0000 inside", "messageId": "J3"},
        {"msisdn": [ALICE], "to": None, "text": True, "messageId": "J4"},
        {"msisdn": ALICE, "to": "12015550200", "text": "x", "messageId": "m" * 500},
        {"messageId": "J6"},
        {},
    ],
)
def test_odd_json_is_never_a_5xx(client, pair, body, django_capture_on_commit_callbacks):
    response = _post(client, django_capture_on_commit_callbacks, json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert CallEvent.objects.filter(source="sms-inbound").count() == 1
    for sent in SandboxMessage.objects.all():
        # Whatever went out went to Bob, from his proxy number, and said what was sent.
        assert (sent.to_number, sent.from_number) == (BOB, "12015550202")


def test_malformed_json_is_400(client, pair):
    assert client.post(INBOUND_URL, "{nope", content_type="application/json").status_code == 400


def test_an_unexpected_error_passing_it_on_still_keeps_it_and_answers_200(client, pair, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("secret text would be here")

    monkeypatch.setattr("webhooks.sms_services.text_receive", boom)
    response = client.post(INBOUND_URL, inbound_params())
    assert response.status_code == 200
    assert CallEvent.objects.filter(source="sms-inbound").count() == 1
    assert not Message.objects.exists()


# --- Payload reading (pure) -----------------------------------------------------------------------


def test_inbound_fields_are_read_defensively():
    sms = inbound_sms({"msisdn": "+1 201-555-0101", "to": "12015550200", "text": "hi", "type": "UNICODE",
                       "messageId": "M1", "concat": "true", "concat-ref": "12", "concat-total": "2",
                       "concat-part": "2"})  # fmt: skip
    assert (sms.sender, sms.to, sms.text, sms.encoding, sms.concat) == (ALICE, "12015550200", "hi", "unicode",
                                                                        ("12", 2, 2))  # fmt: skip
    garbage = inbound_sms({"msisdn": "abc", "type": "weird"})
    assert (garbage.sender, garbage.to, garbage.text, garbage.encoding, garbage.concat) == (
        None, None, None, "text", None)  # fmt: skip


def test_the_duplicate_check_ignores_the_signature_fields():
    params = inbound_params(message_id="SAME")
    key = sms_event_key(params, source="sms-inbound", key_fields=("messageId",))
    again = {**params, "timestamp": "1", "nonce": "other", "sig": "x", "text": "changed"}
    assert sms_event_key(again, source="sms-inbound", key_fields=("messageId",)) == key
