"""The SDK provider reads each call's own answer, and turns any odd answer into ProviderError."""

from __future__ import annotations

import pytest
from vonage_http_client import HttpClient

from telephony.provider import ProviderError
from telephony.sandbox.engine import failure_inject
from telephony.sandbox.wire import Reply
from tests.conftest import ALICE

pytestmark = pytest.mark.django_db

FOR_SALE = "12015550300"


@pytest.fixture
def others_last_response(vonage, monkeypatch):
    """The SDK client's ``last_response`` as another thread would leave it: someone else's success."""
    vonage.send_sms(from_number=FOR_SALE, to_number=ALICE, text="someone else's message")
    vonage.number_insight(ALICE)
    other = vonage._client.http_client.last_response
    monkeypatch.setattr(HttpClient, "last_response", property(lambda self: other))
    return other


def test_an_sms_refusal_is_judged_on_its_own_answer(vonage, others_last_response):
    failure_inject(path="/sms/json", mode="throttle")
    with pytest.raises(ProviderError) as caught:
        vonage.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi")
    assert (caught.value.code, caught.value.permanent) == ("sms-1", False)


def test_a_permanent_sms_refusal_keeps_its_own_status(vonage, others_last_response):
    failure_inject(path="/sms/json", mode="permanent")
    with pytest.raises(ProviderError) as caught:
        vonage.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi")
    assert (caught.value.code, caught.value.permanent) == ("sms-7", True)


def test_an_insight_refusal_is_judged_on_its_own_answer(vonage, others_last_response):
    failure_inject(path="/ni/", mode="throttle")
    with pytest.raises(ProviderError) as caught:
        vonage.number_insight(ALICE)
    assert (caught.value.code, caught.value.permanent) == ("ni-1", False)


def test_an_invalid_number_is_read_from_its_own_answer(vonage, others_last_response):
    result = vonage.number_insight("12345678")
    assert result.valid is False
    assert result.raw["status"] == 3


def test_a_numbers_refusal_is_judged_on_its_own_answer(vonage, others_last_response, answer_with):
    answer_with("/number/buy", Reply(200, {"error-code": "401", "error-code-label": "authentication failed"}))
    with pytest.raises(ProviderError) as caught:
        vonage.buy_number(country="US", number=FOR_SALE)
    assert (caught.value.code, caught.value.permanent) == ("401", True)


# --- Odd answers ----------------------------------------------------------------------------------


@pytest.fixture
def answer_with(sandbox_server, monkeypatch):
    """Make the sandbox server answer ``path`` with ``reply`` (other paths as usual)."""
    from telephony.sandbox import server

    replies: dict[str, Reply] = {}
    real = server.sandbox_handle

    def handle(request):
        reply = replies.get(request.path)
        return reply if reply is not None else real(request)

    monkeypatch.setattr(server, "sandbox_handle", handle)
    return replies.__setitem__


def _sms(p):
    return p.send_sms(from_number=FOR_SALE, to_number=ALICE, text="hi")


def _insight(p):
    return p.number_insight(ALICE)


ODD_ANSWERS = [
    ("/sms/json", _sms, Reply(200, {"message-count": "1", "messages": [{"error-text": "?"}]})),
    ("/sms/json", _sms, Reply(200, {"message-count": "1", "messages": "none"})),
    ("/sms/json", _sms, Reply(200, {"message-count": "1", "messages": []})),
    ("/sms/json", _sms, Reply(200, ["not", "an", "object"])),
    ("/sms/json", _sms, Reply(200, b"<html>proxy error</html>", content_type="text/html")),
    ("/ni/standard/json", _insight, Reply(200, {"status": "n/a", "status_message": "?"})),
    ("/ni/standard/json", _insight, Reply(200, {"status_message": "no status at all"})),
    ("/ni/standard/json", _insight, Reply(200, {"status": None})),
    ("/ni/standard/json", _insight, Reply(200, {"status": 0, "current_carrier": "not an object"})),
    ("/ni/basic/json", lambda p: p.number_insight(ALICE, level="basic"), Reply(200, "just a string")),
    ("/number/buy", lambda p: p.buy_number(country="US", number=FOR_SALE), Reply(200, {"error-code-label": "?"})),
    ("/number/search", lambda p: p.search_numbers(country="US"), Reply(200, {"numbers": "x", "count": 1})),
    ("/account/numbers", lambda p: p.list_owned_numbers(), Reply(200, {"numbers": [{"msisdn": []}], "count": 1})),
    ("/v1/calls/leg-1", lambda p: p.get_call("leg-1"), Reply(200, {"uuid": 5})),
]


@pytest.mark.parametrize(("path", "action", "reply"), ODD_ANSWERS)
def test_odd_answers_are_temporary_provider_errors(vonage, answer_with, path, action, reply):
    answer_with(path, reply)
    with pytest.raises(ProviderError) as caught:
        action(vonage)
    assert caught.value.permanent is False
    assert caught.value.code == "bad-answer"


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        (Reply(400, ["a", "list"]), True),
        (Reply(400, "a string"), True),
        (Reply(503, b"Service Unavailable", content_type="text/plain"), False),
        (Reply(500, None), False),
    ],
)
def test_odd_error_bodies_keep_the_http_status_class(vonage, answer_with, reply, permanent):
    answer_with("/v1/calls/leg-1", reply)
    with pytest.raises(ProviderError) as caught:
        vonage.get_call("leg-1")
    assert caught.value.permanent is permanent
    assert caught.value.code == f"http-{reply.status}"
