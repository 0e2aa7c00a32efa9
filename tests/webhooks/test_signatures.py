from __future__ import annotations

import json
import time

import jwt
import pytest
from django.test import RequestFactory

from proxy.models import CallEvent
from tests.webhooks.conftest import load_fixture
from webhooks.signatures import SignatureError, sign_voice_webhook, verify_token

SECRET = "s3cret-signature-key-of-enough-length"
VOICE_URLS = [
    "/webhooks/answer",
    "/webhooks/event",
    "/webhooks/fallback",
    "/webhooks/recording",
    "/webhooks/transcription",
    "/webhooks/record-notice",
]


@pytest.fixture
def signed(settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET


def post(client, url, body: bytes, token: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(url, body, content_type="application/json", **headers)


@pytest.mark.parametrize("url", VOICE_URLS)
def test_signed_requests_pass(client, db, signed, url):
    body = json.dumps(load_fixture("event_started.json")).encode()
    assert post(client, url, body, sign_voice_webhook(body=body, secret=SECRET)).status_code in (200, 204)


@pytest.mark.parametrize("url", VOICE_URLS)
def test_unsigned_requests_get_401(client, db, signed, url):
    assert post(client, url, b"{}", None).status_code == 401


@pytest.mark.parametrize("url", VOICE_URLS)
def test_wrong_secret_gets_401(client, db, signed, url):
    body = b'{"status": "started"}'
    assert (
        post(
            client, url, body, sign_voice_webhook(body=body, secret="another-secret-entirely-of-32-bytes!")
        ).status_code
        == 401
    )


def test_tampered_body_gets_401_and_nothing_is_kept(client, db, signed):
    body = json.dumps(load_fixture("event_started.json")).encode()
    token = sign_voice_webhook(body=body, secret=SECRET)
    tampered = body.replace(b"started", b"answered")
    assert post(client, "/webhooks/event", tampered, token).status_code == 401
    assert CallEvent.objects.count() == 0


@pytest.mark.parametrize("skew", [-301, 301])
def test_iat_more_than_five_minutes_away_gets_401(client, db, signed, skew):
    body = b"{}"
    token = sign_voice_webhook(body=body, secret=SECRET, iat=int(time.time()) + skew)
    assert post(client, "/webhooks/event", body, token).status_code == 401


def test_get_answer_is_signed_without_payload_hash(client, db, signed):
    token = sign_voice_webhook(body=b"", secret=SECRET)
    assert "payload_hash" not in jwt.decode(token, SECRET, algorithms=["HS256"])
    response = client.get("/webhooks/answer", {"from": "1", "to": "2"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


@pytest.mark.parametrize("header", ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "bearer  "])
def test_malformed_authorization_gets_401(client, db, signed, header):
    assert client.get("/webhooks/answer", HTTP_AUTHORIZATION=header).status_code == 401


def test_none_algorithm_is_refused():
    token = jwt.encode({"iat": int(time.time())}, key=None, algorithm="none")
    with pytest.raises(SignatureError):
        verify_token(token=token, body=b"", secret=SECRET)


def test_without_a_secret_requests_are_accepted(client, db, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    assert client.post("/webhooks/event", b"{}", content_type="application/json").status_code in (200, 204)


@pytest.mark.parametrize("claims", [{"payload_hash": "é"}, {"payload_hash": 5}, {"iat": float("nan")}, {"iat": True}])
def test_odd_claims_signed_with_the_right_secret_are_refused(claims):
    payload = {"iat": int(time.time()), **claims}
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    with pytest.raises(SignatureError):
        verify_token(token=token, body=b"{}", secret=SECRET)


@pytest.mark.parametrize("url", VOICE_URLS)
def test_a_body_under_a_token_without_payload_hash_gets_401(client, db, signed, url):
    """A GET-signed token replayed with an invented body forges nothing."""
    body = json.dumps(load_fixture("event_started.json")).encode()
    get_token = sign_voice_webhook(body=b"", secret=SECRET)
    assert post(client, url, body, get_token).status_code == 401
    assert CallEvent.objects.count() == 0


@pytest.mark.parametrize("url", VOICE_URLS)
def test_a_token_for_another_application_gets_401(client, db, signed, settings, url):
    settings.VONAGE_APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    body = json.dumps(load_fixture("event_started.json")).encode()
    theirs = sign_voice_webhook(body=body, secret=SECRET, application_id="ffffffff-0000-0000-0000-000000000000")
    ours = sign_voice_webhook(body=body, secret=SECRET, application_id=settings.VONAGE_APPLICATION_ID)
    assert post(client, url, body, theirs).status_code == 401
    assert post(client, url, body, ours).status_code in (200, 204)


@pytest.mark.parametrize("url", VOICE_URLS)
def test_a_huge_iat_gets_401_not_500(client, db, signed, url):
    token = jwt.encode({"iat": 10**400}, SECRET, algorithm="HS256")
    assert client.get(url, {"from": "1", "to": "2"}, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_a_get_with_a_body_is_checked_against_its_payload_hash(client, db, signed):
    """A GET that declares a body has it read and checked like a POST's (only a request that
    declares none skips Django's reading of the stream)."""
    from webhooks.signatures import verify_voice_webhook

    factory = RequestFactory()
    body = b'{"from": "12015550101"}'
    good = sign_voice_webhook(body=body, secret=SECRET)
    bodyless = sign_voice_webhook(body=b"", secret=SECRET)

    def get(token: str, data: bytes):
        request = factory.generic("GET", "/webhooks/answer", data, "application/json")
        request.META["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return request

    verify_voice_webhook(get(good, body))
    with pytest.raises(SignatureError, match="payload_hash"):
        verify_voice_webhook(get(bodyless, body))
    with pytest.raises(SignatureError, match="payload_hash"):
        verify_voice_webhook(get(good, b'{"from": "12015550999"}'))
    # Without a body: nothing to hash, and the stream is left unread for the view.
    request = get(bodyless, b"")
    verify_voice_webhook(request)
    assert not request._read_started and request.body == b""
