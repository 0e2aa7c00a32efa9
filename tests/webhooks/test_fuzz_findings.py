"""What the fuzzer of issue 18 found on the voice webhooks, each kept as a regression test.

Every case is signed: a well-signed event must get a 2xx, and a bad value in it must
never poison the call for the events after it, its recording or the calls list.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from proxy.models import Call, CallEvent
from tests.conftest import ALICE
from tests.webhooks.conftest import load_fixture
from webhooks.signatures import sign_voice_webhook

SECRET = "fuzz-findings-signature-secret-0123456789"
INBOUND = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


@pytest.fixture
def signed(settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET


def send(client, url: str, payload: dict | bytes):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    token = sign_voice_webhook(body=body, secret=SECRET)
    return client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def calls_api(conversation, api_key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return lambda: api.get(f"/api/v1/conversations/{conversation.pk}/calls")


def _poison_then_live_on(client, calls_api, poison: dict) -> None:
    token = sign_voice_webhook(body=b"", secret=SECRET)
    answer = client.get(
        "/webhooks/answer", load_fixture("answer_get.json")["payload"], HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert answer.json()[-1]["action"] == "connect"
    assert 200 <= send(client, "/webhooks/event", poison).status_code <= 205
    for name in ("event_ringing.json", "event_answered.json", "event_completed.json"):
        assert 200 <= send(client, "/webhooks/event", load_fixture(name)).status_code <= 205
    assert 200 <= send(client, "/webhooks/recording", load_fixture("event_record.json")).status_code <= 205
    response = calls_api()
    assert response.status_code == 200
    assert response.json()["results"][0]["uuid"] == INBOUND
    assert Call.objects.get(uuid=INBOUND).status == "completed"


@pytest.mark.parametrize("field", ["timestamp", "start_time", "end_time"])
@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59.999999-23:59"],
    ids=["year 9999 negative offset", "year 1 positive offset", "last instant"],
)
def test_an_out_of_range_time_does_not_poison_the_call(client, signed, calls_api, field, value):
    poison = {**load_fixture("event_completed.json"), "status": "started", field: value}
    _poison_then_live_on(client, calls_api, poison)


@pytest.mark.parametrize("field", ["price", "rate"])
@pytest.mark.parametrize("value", ["999999.999999999", "999999.99999999999", 999999.999999999, "1e6"])
def test_money_that_rounds_past_its_column_is_dropped_not_a_503(client, signed, calls_api, field, value):
    poison = {**load_fixture("event_completed.json"), field: value}
    _poison_then_live_on(client, calls_api, poison)


@pytest.mark.parametrize("value", ["999999.999999999", 1e300])
def test_a_recording_with_odd_figures_is_kept(client, signed, conversation, value):
    payload = {**load_fixture("event_record.json"), "size": value, "price": value}
    assert 200 <= send(client, "/webhooks/recording", payload).status_code <= 205


@pytest.mark.parametrize(
    "garbage",
    [b'"\\ud800"', b"NaN", b"Infinity", b"1" * 4300, b"-" + b"9" * 5000, b'"\\u0000"', b"1e999999"],
    ids=["lone surrogate", "NaN", "Infinity", "4300 digits", "5000 digits negative", "NUL", "huge exponent"],
)
def test_one_unreadable_field_still_routes_a_known_caller(client, signed, conversation, garbage):
    answer = load_fixture("answer_post.json")
    payload = answer.get("payload", answer)
    text = json.dumps({**payload, "from": ALICE, "to": "12015550200", "custom_data": "GARBAGE"}).encode()
    body = text.replace(b'"GARBAGE"', garbage)
    response = send(client, "/webhooks/answer", body)
    assert response.status_code == 200
    ncco = response.json()
    assert ncco[-1]["action"] == "connect", ncco


def test_a_whole_garbage_answer_is_an_unknown_caller(client, signed, conversation):
    response = send(client, "/webhooks/answer", b'{"from": NaN, "to": NaN}')
    assert response.status_code == 200
    assert [action["action"] for action in response.json()] == ["talk"]


def test_events_with_garbage_fields_are_kept_for_audit(client, signed, conversation):
    body = json.dumps({**load_fixture("event_started.json"), "detail": "X"}).encode().replace(b'"X"', b"NaN")
    assert 200 <= send(client, "/webhooks/event", body).status_code <= 205
    assert CallEvent.objects.count() == 1
