"""SMS webhooks: Vonage's `sig` signing, delivery receipts updating the outbox once, inbound SMS kept."""

from __future__ import annotations

import pytest
from django.test import Client
from vonage_http_client.auth import Auth

from proxy.models import CallEvent, Notification
from proxy.notifications import client_ref_for
from tests.conftest import ALICE, BOB
from tests.factories import ParticipantFactory
from webhooks.signatures import SmsSignatureError, sms_sign_params, sms_signature, sms_verify

SECRET = "sms-signature-secret"
STATUS_URL = "/webhooks/sms/status"


# --- Signing (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_hmac_signatures_match_the_vonage_sdk(method):
    params = {"msisdn": ALICE, "to": "12015550200", "text": "a=b&c", "timestamp": "1700000000", "nonce": "n1"}
    sdk = Auth(api_key="key", signature_secret=SECRET, signature_method=method)
    assert sms_signature(params, secret=SECRET, method=method) == sdk.sign_params(dict(params))


def test_md5hash_is_md5_of_the_parameters_then_the_secret():
    import hashlib

    params = {"b": "2", "a": "x&y=z"}
    expected = hashlib.md5(f"&a=x_y_z&b=2{SECRET}".encode()).hexdigest()  # noqa: S324
    assert sms_signature(params, secret=SECRET, method="md5hash") == expected


def test_sign_then_verify_round_trips_and_tampering_fails():
    signed = sms_sign_params({"messageId": "ABC", "status": "delivered"}, secret=SECRET, method="sha256")
    assert {"timestamp", "nonce", "sig"} <= set(signed)
    sms_verify(signed, secret=SECRET, method="sha256")
    sms_verify({**signed, "sig": signed["sig"].upper()}, secret=SECRET, method="sha256")
    with pytest.raises(SmsSignatureError):
        sms_verify({**signed, "status": "failed"}, secret=SECRET, method="sha256")
    with pytest.raises(SmsSignatureError):
        sms_verify({k: v for k, v in signed.items() if k != "sig"}, secret=SECRET, method="sha256")


# --- Delivery receipts -------------------------------------------------------------------------


@pytest.fixture
def sent(db) -> Notification:
    participant = ParticipantFactory(real_number=ALICE)
    return Notification.objects.create(
        participant=participant,
        service=participant.service,
        to_number=ALICE,
        from_number=participant.proxy_number_id,
        text="hello",
        status=Notification.Status.SENT,
        message_id="0A0000001234ABCD",
        attempts=1,
    )


def _receipt(notification: Notification, status: str = "delivered", **extra) -> dict[str, str]:
    return {
        "msisdn": notification.to_number,
        "to": notification.from_number,
        "network-code": "12345",
        "messageId": notification.message_id,
        "price": "0.00750000",
        "status": status,
        "scts": "2001011400",
        "err-code": "0" if status == "delivered" else "6",
        "message-timestamp": "2026-11-27 12:00:00",
        **extra,
    }


def test_unsigned_receipt_marks_the_row_delivered(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    response = client.get(STATUS_URL, _receipt(sent))
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == Notification.Status.DELIVERED
    assert str(sent.price) == "0.00750000"


@pytest.mark.parametrize("method", ["md5hash", "sha256"])
def test_signed_receipt_is_accepted(client: Client, sent, settings, method):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_METHOD = method
    response = client.post(STATUS_URL, sms_sign_params(_receipt(sent), secret=SECRET, method=method))
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == Notification.Status.DELIVERED


@pytest.mark.parametrize("sig", [None, "0" * 32, "bad"])
def test_missing_or_bad_signature_is_401_and_changes_nothing(client: Client, sent, settings, sig):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    params = _receipt(sent)
    if sig:
        params["sig"] = sig
    response = client.post(STATUS_URL, params)
    assert response.status_code == 401
    sent.refresh_from_db()
    assert sent.status == Notification.Status.SENT
    assert not CallEvent.objects.exists()


def test_signed_json_receipt_is_accepted(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_METHOD = "sha256"
    body = sms_sign_params(_receipt(sent), secret=SECRET, method="sha256")
    response = client.post(STATUS_URL, body, content_type="application/json")
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == Notification.Status.DELIVERED


def test_the_same_receipt_twice_updates_the_row_once(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    client.get(STATUS_URL, _receipt(sent))
    sent.refresh_from_db()
    first_update = sent.updated_at
    client.post(STATUS_URL, _receipt(sent))
    sent.refresh_from_db()
    assert sent.updated_at == first_update
    assert CallEvent.objects.filter(source="sms-status").count() == 1


def test_a_late_receipt_never_moves_a_final_status_back(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    client.get(STATUS_URL, _receipt(sent, "delivered"))
    client.get(STATUS_URL, _receipt(sent, "buffered"))
    client.get(STATUS_URL, _receipt(sent, "failed"))
    sent.refresh_from_db()
    assert sent.status == Notification.Status.DELIVERED


def test_failed_receipt_fails_the_row_with_the_error_code(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    client.get(STATUS_URL, _receipt(sent, "rejected"))
    sent.refresh_from_db()
    assert sent.status == Notification.Status.FAILED
    assert "rejected" in sent.last_error and "err-code 6" in sent.last_error


def test_receipt_updates_only_the_row_it_names(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    other = ParticipantFactory(real_number=BOB)
    bystander = Notification.objects.create(
        participant=other,
        service=other.service,
        to_number=BOB,
        from_number=other.proxy_number_id,
        text="hi",
        status=Notification.Status.SENT,
        message_id="0B0000009999ZZZZ",
    )
    client.get(STATUS_URL, _receipt(sent))
    bystander.refresh_from_db()
    assert bystander.status == Notification.Status.SENT


def test_receipt_for_another_number_is_ignored(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    response = client.get(STATUS_URL, {**_receipt(sent), "msisdn": BOB})
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == Notification.Status.SENT


def test_receipt_before_the_send_was_recorded_matches_by_client_ref(client: Client, sent, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    Notification.objects.filter(pk=sent.pk).update(status=Notification.Status.QUEUED, message_id="")
    client.get(STATUS_URL, {**_receipt(sent), "client-ref": client_ref_for(sent)})
    sent.refresh_from_db()
    assert sent.status == Notification.Status.DELIVERED
    assert sent.message_id == "0A0000001234ABCD"


def test_unknown_message_gets_200_and_is_kept(client: Client, db, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    response = client.get(STATUS_URL, {"messageId": "NOPE", "status": "delivered", "msisdn": ALICE})
    assert response.status_code == 200
    assert CallEvent.objects.get(source="sms-status").payload["messageId"] == "NOPE"


def test_malformed_json_is_400(client: Client, db, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    response = client.post(STATUS_URL, "{nope", content_type="application/json")
    assert response.status_code == 400


# --- Inbound SMS -------------------------------------------------------------------------------


def _inbound() -> dict[str, str]:
    return {
        "msisdn": ALICE,
        "to": "12015550200",
        "messageId": "1200000012345678",
        "text": "Hello there",
        "type": "text",
        "keyword": "HELLO",
        "message-timestamp": "2026-11-27 12:00:00",
    }


def test_inbound_sms_is_kept_once(client: Client, db, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    assert client.get("/webhooks/sms/inbound", _inbound()).status_code == 200
    assert client.post("/webhooks/sms/inbound", _inbound()).status_code == 200
    event = CallEvent.objects.get(source="sms-inbound")
    assert event.kind == "sms_inbound" and event.payload["text"] == "Hello there"


def test_inbound_sms_needs_a_valid_signature_when_a_secret_is_set(client: Client, db, settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_METHOD = "md5hash"
    assert client.post("/webhooks/sms/inbound", _inbound()).status_code == 401
    signed = sms_sign_params(_inbound(), secret=SECRET, method="md5hash")
    assert client.post("/webhooks/sms/inbound", signed).status_code == 200
    assert CallEvent.objects.filter(source="sms-inbound").count() == 1
