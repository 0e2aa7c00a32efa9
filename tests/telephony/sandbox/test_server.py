"""The sandbox speaks Vonage's wire format: strings where Vonage sends strings, its codes and bodies."""

from __future__ import annotations

import pytest
import requests

from telephony.sandbox.engine import call_record, failure_inject
from telephony.sandbox.server import serve_sandbox
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db

BEARER = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhcHBsaWNhdGlvbl9pZCI6ImFwcCJ9."


@pytest.fixture
def http(sandbox_server):
    session = requests.Session()
    session.verify = sandbox_server.ca_path
    base = sandbox_server.base_url

    def send(method, path, **kwargs):
        # Voice requests bring their own bearer token; the rest use key and secret.
        auth = None if "headers" in kwargs else ("key", "secret")
        return session.request(method, base + path, timeout=5, auth=auth, **kwargs)

    return send


def test_sms_answer_uses_strings(http):
    body = http("POST", "/sms/json", data={"from": "12015550300", "to": ALICE, "text": "hi", "client-ref": "r"}).json()
    assert body["message-count"] == "1"
    (message,) = body["messages"]
    assert message["status"] == "0"
    assert isinstance(message["message-price"], str)
    assert isinstance(message["remaining-balance"], str)
    assert message["client-ref"] == "r"


def test_sms_errors_are_http_200_with_a_status(http):
    response = http("POST", "/sms/json", data={"from": "12015550300", "text": "hi"})
    assert response.status_code == 200
    assert response.json()["messages"][0] == {"status": "2", "error-text": "Missing to param"}


def test_injected_server_error_is_http_500(http):
    failure_inject(path="/sms/json", mode="5xx")
    assert http("POST", "/sms/json", data={"from": "1", "to": ALICE, "text": "x"}).status_code == 500


def test_number_insight_status_is_an_integer(http):
    body = http("GET", "/ni/standard/json", params={"number": ALICE}).json()
    assert body["status"] == 0
    assert body["country_code"] == "US"
    assert body["current_carrier"]["network_type"] == "mobile"
    assert isinstance(body["request_price"], str)


def test_number_search_count_is_an_integer_and_costs_are_strings(http):
    body = http("GET", "/number/search", params={"country": "US", "size": 3}).json()
    assert body["count"] == 50
    assert len(body["numbers"]) == 3
    assert isinstance(body["numbers"][0]["cost"], str)
    assert body["numbers"][0]["features"] == ["VOICE", "SMS"]


def test_buying_a_number_not_for_sale_is_420(http):
    response = http("POST", "/number/buy", data={"country": "US", "msisdn": BOB})
    assert response.status_code == 420
    assert response.json() == {"error-code": "420", "error-code-label": "method failed"}


def test_call_resource_matches_vonage(http):
    call_record(
        uuid="leg-1",
        conversation_uuid="CON-1",
        direction="outbound",
        from_number="12015550300",
        to_number=BOB,
        status="completed",
        duration=61,
        price="0.02540000",
    )
    body = http("GET", "/v1/calls/leg-1", headers={"Authorization": BEARER}).json()
    assert body["duration"] == "61"
    assert body["price"] == "0.02540000"
    assert body["to"] == {"type": "phone", "number": BOB}
    assert body["_links"]["self"]["href"] == "/v1/calls/leg-1"


def test_hangup_is_204_without_a_body(http):
    call_record(
        uuid="leg-1", conversation_uuid="C", direction="outbound", from_number="1", to_number=BOB, status="answered"
    )
    response = http("PUT", "/v1/calls/leg-1", json={"action": "hangup"}, headers={"Authorization": BEARER})
    assert response.status_code == 204
    assert response.content == b""


def test_unknown_path_is_a_vonage_404(http):
    response = http("GET", "/v1/nothing", headers={"Authorization": BEARER})
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


def test_throttled_voice_request_is_429(http):
    call_record(
        uuid="leg-1", conversation_uuid="C", direction="outbound", from_number="1", to_number=BOB, status="answered"
    )
    failure_inject(path="/v1/calls", mode="throttle", count=1)
    headers = {"Authorization": BEARER}
    assert http("GET", "/v1/calls/leg-1", headers=headers).status_code == 429
    assert http("GET", "/v1/calls/leg-1", headers=headers).status_code == 200


def test_the_ca_can_be_written_where_asked(tmp_path):
    ca_file = tmp_path / "ca" / "sandbox.pem"
    with serve_sandbox(ca_file=str(ca_file)) as server:
        assert server.ca_path == str(ca_file)
        assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
        response = requests.get(f"{server.base_url}/v1/calls", verify=str(ca_file), timeout=5)
        assert response.status_code == 401
