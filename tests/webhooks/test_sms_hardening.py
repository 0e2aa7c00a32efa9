"""SMS webhooks under hostile input (issue 18): a 401 or a 200, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from proxy.models import Notification
from tests.conftest import ALICE
from tests.factories import ParticipantFactory
from webhooks.signatures import SmsSignatureError, sms_sign_params, sms_verify

SECRET = "sms-signature-secret"
STATUS_URL = "/webhooks/sms/status"
INBOUND_URL = "/webhooks/sms/inbound"


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


def _receipt(notification: Notification, **extra: str) -> dict[str, str]:
    return {
        "msisdn": notification.to_number,
        "to": notification.from_number,
        "messageId": notification.message_id,
        "price": "0.00750000",
        "status": "delivered",
        "err-code": "0",
        "message-timestamp": "2026-11-27 12:00:00",
        **extra,
    }


@pytest.mark.parametrize("sig", ["é", "%C3%A9", "\u00e9" * 40, "zz" * 16, "\ud800", "0" * 10_000, " " * 32])
def test_a_malformed_sig_is_refused_not_an_error(sig):
    with pytest.raises(SmsSignatureError):
        sms_verify({"messageId": "x", "sig": sig}, secret=SECRET)


@pytest.mark.parametrize("url", [STATUS_URL, INBOUND_URL])
@pytest.mark.parametrize("query", ["sig=%C3%A9", "sig=%E2%82%AC%E2%82%AC", "sig=%FF", "sig=%00", "sig=x&sig=%C3%A9"])
def test_a_non_ascii_sig_in_the_query_is_401(client: Client, db, settings, url, query):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    response = client.get(f"{url}?messageId=ABC&status=delivered&{query}")
    assert response.status_code == 401


@pytest.mark.parametrize("url", [STATUS_URL, INBOUND_URL])
@pytest.mark.parametrize("sig", ["é", ["x"], {"a": 1}, 5, None])
def test_an_odd_sig_in_a_json_body_is_401(client: Client, db, settings, url, sig):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    body = {"messageId": "ABC", "status": "delivered", "sig": sig}
    assert client.post(url, body, content_type="application/json").status_code == 401


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-Infinity", "1e20", "999999.999999999", "1e-999999999"])
def test_a_receipt_with_an_odd_price_is_applied_without_it(client: Client, sent, settings, price):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    response = client.post(STATUS_URL, sms_sign_params(_receipt(sent, price=price), secret=SECRET))
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == Notification.Status.DELIVERED
    assert sent.price is None or sent.price == 0


@pytest.mark.parametrize(
    "client_ref",
    ["notification-²", "notification-١٢", "notification-" + "9" * 5000, "notification-" + "9" * 30, "notification--1"],
    ids=["superscript", "arabic digits", "5000 digits", "past bigint", "negative"],
)
def test_a_receipt_with_an_odd_client_ref_matches_nothing_and_is_200(client: Client, sent, settings, client_ref):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    params = _receipt(sent, messageId="UNKNOWN-ID", **{"client-ref": client_ref})
    response = client.post(STATUS_URL, sms_sign_params(params, secret=SECRET))
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == Notification.Status.SENT


def test_a_parameter_with_a_lone_surrogate_is_refused_not_an_error(client: Client, db, settings):
    with pytest.raises(SmsSignatureError):
        sms_verify({"messageId": "ABC", "text": "\ud800", "sig": "0" * 32}, secret=SECRET)
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    body = '{"messageId": "ABC", "text": "\\ud800", "sig": "' + "0" * 32 + '"}'
    assert client.post(INBOUND_URL, body, content_type="application/json").status_code in (400, 401)


@pytest.mark.parametrize(
    "client_ref",
    ["message-²", "message-١٢", "message-" + "9" * 5000, "message-" + "9" * 30, "message--1"],
    ids=["superscript", "arabic digits", "5000 digits", "past bigint", "negative"],
)
def test_a_text_receipt_with_an_odd_client_ref_matches_nothing_and_is_200(client: Client, db, settings, client_ref):
    """Receipts of relayed texts read their client-ref by the same rule as notifications'."""
    from proxy.message_outbox import message_receipt_apply

    params = {"messageId": "UNKNOWN-ID", "msisdn": "12015550101", "status": "delivered", "client-ref": client_ref}
    assert message_receipt_apply(params=params) is None
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    response = client.post(STATUS_URL, sms_sign_params(params, secret=SECRET))
    assert response.status_code == 200
