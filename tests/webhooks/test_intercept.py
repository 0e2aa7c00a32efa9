"""The intercept hook on the answer path, against a real HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.models import Call, CallbackDelivery
from tests.conftest import ALICE, BOB
from tests.hook_server import DRIP, HANG, HookServer, Reply, json_reply, service_hook, signature_ok
from tests.webhooks.conftest import actions, answered, post_json

SECRET = "whsec_test"
ANSWER = {"from": ALICE, "to": "12015550200", "uuid": "leg-1", "conversation_uuid": "CON-1"}


@pytest.fixture
def hook(settings, service) -> Iterator[HookServer]:
    with service_hook(settings, service, url_field="intercept_url", secret=SECRET) as server:
        yield server


def _answer(client, payload=ANSWER):
    response = answered(client, payload)
    return response.json(), response


def test_a_2xx_connects_and_the_hook_sees_ids_never_numbers(client, conversation, hook):
    ncco, response = _answer(client)
    assert actions(ncco) == ["connect"] and ncco[0]["endpoint"][0]["number"] == BOB
    (request,) = hook.requests
    assert signature_ok(request, SECRET)
    assert request["headers"]["X-Callback-Event"] == "call.intercept"
    body = request["json"]
    assert set(body) == {"id", "type", "created_at", "data"} and body["type"] == "call.intercept"
    alice, bob = conversation.participants.order_by("position")
    assert body["data"]["call"] == {
        "uuid": "leg-1",
        "from_participant": str(alice.public_id),
        "to_participant": str(bob.public_id),
    }
    assert body["data"]["conversation"]["id"] == str(conversation.pk)
    assert body["data"]["conversation"]["status"] == "open"
    assert ALICE not in request["body"].decode() and BOB not in request["body"].decode()
    assert response["X-Hook-Outcome"].startswith("call.intercept: allowed (HTTP 204")


def test_the_outcome_is_kept_on_the_call_and_linked(client, conversation, hook):
    hook.reply = Reply(200, b"<html>ok</html>", {"Content-Type": "text/html"})
    _answer(client)
    call = Call.objects.get(uuid="leg-1")
    alice, bob = conversation.participants.order_by("position")
    assert (call.hook, call.hook_outcome, call.hook_status_code, call.hook_detail) == (
        "intercept",
        "allowed",
        200,
        "HTTP 200",
    )
    assert call.hook_ms is not None
    assert (call.conversation, call.from_participant, call.to_participant) == (conversation, alice, bob)
    assert call.direction == "inbound" and call.conversation_uuid == "CON-1"
    # The first event finds the row and keeps what the hook decided.
    post_json(client, "/webhooks/event", {**ANSWER, "status": "started", "direction": "inbound"})
    call.refresh_from_db()
    assert call.status == "started" and call.hook_outcome == "allowed"


def test_a_403_blocks_with_the_services_text(client, conversation, hook, service):
    hook.reply = Reply(403)
    ncco, response = _answer(client)
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.not_allowed_text
    assert Call.objects.get(uuid="leg-1").hook_outcome == "blocked"
    assert "blocked (HTTP 403" in response["X-Hook-Outcome"]


def test_an_event_that_came_first_still_gets_the_outcome(client, conversation, hook):
    post_json(client, "/webhooks/event", {**ANSWER, "status": "started", "direction": "inbound"})
    hook.reply = Reply(403)
    _answer(client)
    call = Call.objects.get(uuid="leg-1")
    assert (call.status, call.hook_outcome) == ("started", "blocked")


BAD_HOOKS = {
    "server error": Reply(500, b"oops"),
    "not found": Reply(404),
    # To the hook server itself: a client that followed it would ask for /elsewhere there.
    "redirect": Reply(302, b"", {"Location": "/elsewhere"}),
    "huge 2xx body": Reply(200, b"x" * (70 * 1024)),
    "silence": HANG,
    "a stalled reply": DRIP,
}


@pytest.mark.parametrize("on_error", ["allow", "block"])
@pytest.mark.parametrize("name", list(BAD_HOOKS))
def test_anything_else_falls_back_to_intercept_on_error(client, conversation, hook, service, on_error, name, caplog):
    service.intercept_on_error = on_error
    service.save()
    hook.reply = BAD_HOOKS[name]
    ncco, _ = _answer(client)
    if on_error == "allow":
        assert actions(ncco) == ["connect"] and ncco[0]["endpoint"][0]["number"] == BOB
    else:
        assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.not_allowed_text
    call = Call.objects.get(uuid="leg-1")
    assert call.hook_outcome == {"allow": "allowed_on_error", "block": "blocked_on_error"}[on_error]
    assert call.hook_detail
    assert [r["path"] for r in hook.requests] == ["/hooks"]  # a redirect is never followed
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "intercept hook" in logged and ALICE not in logged and BOB not in logged


def test_a_private_address_is_refused_unless_allowed(client, conversation, hook, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    ncco, _ = _answer(client)
    assert actions(ncco) == ["connect"]  # intercept_on_error: allow (the default)
    assert hook.requests == []
    call = Call.objects.get(uuid="leg-1")
    assert call.hook_outcome == "allowed_on_error" and "non-public" in call.hook_detail


def test_the_marketplace_hears_call_intercepted_without_numbers(client, conversation, hook, service):
    service.callback_url = "https://hooks.example.com/events"
    service.save()
    hook.reply = Reply(403)
    _answer(client)
    delivery = CallbackDelivery.objects.get(event="call.intercepted")
    data = delivery.payload["data"]
    assert data["hook"]["outcome"] == "blocked" and data["hook"]["status_code"] == 403
    assert data["call"]["uuid"] == "leg-1" and data["conversation"]["id"] == str(conversation.pk)
    assert ALICE not in str(delivery.payload) and BOB not in str(delivery.payload)


def test_after_a_rotation_hooks_carry_both_signatures_for_a_day(client, conversation, hook, service):
    from proxy.service_settings import callback_secret_rotate

    new = callback_secret_rotate(service=service)
    _answer(client)
    assert signature_ok(hook.requests[0], new, position=0)
    assert signature_ok(hook.requests[0], SECRET, position=1)
    service.callback_secret_rotated_at = timezone.now() - timedelta(hours=25)
    service.save()
    _answer(client, {**ANSWER, "uuid": "leg-2"})
    assert hook.requests[1]["headers"]["X-Signature"].count("sha256=") == 1
    assert signature_ok(hook.requests[1], new)


def test_without_a_hook_the_answer_is_still_one_read(client, conversation, service, django_assert_num_queries):
    service.callback_url = "https://hooks.example.com/events"
    service.save()
    with django_assert_num_queries(1):
        ncco, response = _answer(client)
    assert actions(ncco) == ["connect"] and "X-Hook-Outcome" not in response
    assert not Call.objects.exists()


def test_a_hook_reply_with_json_does_not_matter_to_intercept(client, conversation, hook):
    hook.reply = json_reply({"action": "block"}, status=200)
    ncco, _ = _answer(client)
    assert actions(ncco) == ["connect"]


def test_a_withheld_or_unknown_caller_is_not_intercepted(client, conversation, hook):
    ncco, _ = _answer(client, {**ANSWER, "from": "Unknown"})
    assert actions(ncco) == ["talk"] and hook.requests == []
