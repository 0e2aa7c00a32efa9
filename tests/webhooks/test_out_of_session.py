"""The out-of-session hook on the answer path, against a real HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.models import Call, CallbackDelivery, Conversation, Notification, Participant
from proxy.services import conversation_close
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import VirtualNumberFactory
from tests.hook_server import HANG, HookServer, Reply, json_reply, service_hook, signature_ok
from tests.webhooks.conftest import actions, answered

SECRET = "whsec_oos"
DAVE = "12015550104"
# Carol, a stranger, calls the number Alice dials to reach Bob.
CALL = {"from": CAROL, "to": "12015550200", "uuid": "leg-oos", "conversation_uuid": "CON-oos"}


@pytest.fixture
def hook(settings, service) -> Iterator[HookServer]:
    with service_hook(settings, service, url_field="out_of_session_url", secret=SECRET) as server:
        yield server


def _answer(client, payload=CALL):
    return answered(client, payload).json()


def test_an_unknown_caller_is_asked_about_with_their_number(client, conversation, hook):
    hook.reply = json_reply({"action": "talk", "text": "Please call our support line."})
    ncco = _answer(client)
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == "Please call our support line."
    (request,) = hook.requests
    assert signature_ok(request, SECRET)
    body = request["json"]
    assert body["type"] == "call.out_of_session"
    assert body["data"] == {"from": CAROL, "to": "12015550200", "conversation": None}
    call = Call.objects.get(uuid="leg-oos")
    assert (call.hook, call.hook_outcome, call.hook_status_code) == ("out_of_session", "talk", 200)
    assert call.conversation is None and call.service_id == conversation.service_id


def test_a_withheld_caller_is_asked_about_with_from_null(client, conversation, hook, service):
    hook.reply = json_reply({"action": "talk", "text": "Hello."})
    _answer(client, {**CALL, "from": "Unknown"})
    assert hook.requests[0]["json"]["data"]["from"] is None


def test_an_ended_conversation_comes_with_the_hook(client, conversation, hook, service):
    conversation_close(conversation=conversation)
    hook.reply = Reply(500)
    ncco = _answer(client, {**CALL, "from": ALICE})
    # The hook failed: the message the caller hears without it.
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.ended_text
    data = hook.requests[0]["json"]["data"]
    assert data["from"] == ALICE
    assert data["conversation"]["id"] == str(conversation.pk) and data["conversation"]["status"] == "closed"
    call = Call.objects.get(uuid="leg-oos")
    assert (call.hook_outcome, call.hook_detail) == ("default", "HTTP 500")


def test_an_expired_conversation_is_out_of_session_too(client, conversation, hook):
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    hook.reply = json_reply({"action": "talk", "text": "Your trip is over."})
    ncco = _answer(client, {**CALL, "from": ALICE})
    assert ncco[0]["text"] == "Your trip is over."
    assert hook.requests[0]["json"]["data"]["conversation"]["id"] == str(conversation.pk)


def test_a_known_caller_never_reaches_this_hook(client, conversation, hook):
    ncco = _answer(client, {**CALL, "from": ALICE})
    assert actions(ncco) == ["connect"] and hook.requests == []


def test_connect_rings_the_number_with_the_dialled_number_as_caller_id(client, conversation, hook, service):
    hook.reply = json_reply({"action": "connect", "number": "(201) 555-0104"})  # national, the service's US
    ncco = _answer(client)
    assert actions(ncco) == ["connect"]
    connect = ncco[0]
    assert connect["endpoint"] == [{"type": "phone", "number": DAVE}]
    assert connect["from"] == "12015550200" and connect["eventType"] == "synchronous"
    assert connect["timeout"] == service.connect_timeout
    assert Call.objects.get(uuid="leg-oos").hook_outcome == "connect"


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("07700 900123", "not a valid phone number"),  # merely possible: refused like the API refuses it
        ("not a number", "not a valid phone number"),
        ("+1 201 555 0202", "a proxy number"),  # one of ours: the call would come back here
        ("+" + CAROL, "the caller's own number"),
    ],
)
def test_connect_to_a_bad_number_plays_the_default_message(client, conversation, hook, service, number, why):
    hook.reply = json_reply({"action": "connect", "number": number})
    ncco = _answer(client)
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.unknown_caller_text
    call = Call.objects.get(uuid="leg-oos")
    assert call.hook_outcome == "default" and why in call.hook_detail
    assert "0202" not in call.hook_detail and "900123" not in call.hook_detail


def test_open_opens_a_conversation_like_the_api_and_connects_at_once(client, conversation, hook, service):
    service.callback_url = "https://hooks.example.com/events"
    service.save()
    hook.reply = json_reply(
        {
            "action": "open",
            "participant": {"number": "+" + DAVE, "name": "Dave"},
            "ttl": 600,
            "external_id": "support-7",
            "metadata": {"why": "late call"},
        }
    )
    ncco = _answer(client)
    opened = Conversation.objects.get(external_id="support-7")
    carol, dave = opened.participants.order_by("position")
    # The caller keeps the number they dialled; Dave gets a number of his own.
    assert (carol.real_number, carol.proxy_number_id) == (CAROL, "12015550200")
    assert dave.real_number == DAVE and dave.name == "Dave"
    assert opened.metadata == {"why": "late call"} and opened.status == "open"
    assert timedelta(seconds=590) < opened.expires_at - timezone.now() <= timedelta(seconds=600)
    assert actions(ncco) == ["connect"]
    assert ncco[0]["endpoint"][0]["number"] == DAVE and ncco[0]["from"] == dave.proxy_number_id
    # The same notifications and callbacks as an API creation.
    assert Notification.objects.filter(participant__conversation=opened).count() == 2
    assert CallbackDelivery.objects.filter(event="conversation.opened").count() == 1
    call = Call.objects.get(uuid="leg-oos")
    assert (call.hook_outcome, call.conversation, call.from_participant, call.to_participant) == (
        "open",
        opened,
        carol,
        dave,
    )
    told = CallbackDelivery.objects.get(event="call.out_of_session").payload
    assert told["data"]["hook"]["outcome"] == "open" and told["data"]["conversation"]["id"] == str(opened.pk)
    assert CAROL not in str(told) and DAVE not in str(told)
    # Carol's next call on that number is an ordinary known call to Dave.
    again = _answer(client, {**CALL, "uuid": "leg-2"})
    assert again[-1]["endpoint"][0]["number"] == DAVE and len(hook.requests) == 1


def test_open_keeps_the_invariants_when_the_dialled_number_is_not_free(client, conversation, hook):
    # Alice's pair with 12015550200 cools down from her conversation with Bob: a late call
    # on it must never reach someone new, so her conversation with Dave gets another number.
    conversation_close(conversation=conversation)
    hook.reply = json_reply({"action": "open", "participant": {"number": DAVE}})
    ncco = _answer(client, {**CALL, "from": ALICE})
    opened = Conversation.objects.exclude(pk=conversation.pk).get()
    alice = opened.participants.get(real_number=ALICE)
    assert alice.proxy_number_id != "12015550200"
    assert ncco[-1]["endpoint"][0]["number"] == DAVE


def test_open_keeps_a_dialled_number_in_another_country(client, service, conversation, hook):
    VirtualNumberFactory(service=service, number="447400000001", country="GB")
    hook.reply = json_reply({"action": "open", "participant": {"number": DAVE}})
    _answer(client, {**CALL, "to": "447400000001"})
    carol = Participant.objects.get(real_number=CAROL)
    assert carol.proxy_number_id == "447400000001"


def test_open_with_an_exhausted_pool_plays_the_default_message(client, service, hook):
    VirtualNumberFactory(service=service, number="12015550200")
    # Dave already holds the only number with someone else.
    from proxy.services import conversation_create

    conversation_create(service=service, participants=[{"number": DAVE}, {"number": BOB}], notify=False)
    hook.reply = json_reply({"action": "open", "participant": {"number": DAVE}})
    ncco = _answer(client)
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.unknown_caller_text
    assert Call.objects.get(uuid="leg-oos").hook_detail == "open: pool_exhausted"
    assert Conversation.objects.count() == 1


def test_open_for_a_withheld_caller_plays_the_default_message(client, conversation, hook, service):
    hook.reply = json_reply({"action": "open", "participant": {"number": DAVE}})
    ncco = _answer(client, {**CALL, "from": ""})
    assert ncco[0]["text"] == service.unknown_caller_text
    assert Conversation.objects.count() == 1


def test_open_with_an_invalid_participant_plays_the_default_message(client, conversation, hook, service):
    hook.reply = json_reply({"action": "open", "participant": {"number": "12345"}})
    ncco = _answer(client)
    assert ncco[0]["text"] == service.unknown_caller_text
    assert Call.objects.get(uuid="leg-oos").hook_detail == "open: invalid participant (number)"
    assert Participant.objects.filter(real_number=CAROL).count() == 0


GARBAGE = {
    "html": Reply(200, b"<html><body>Welcome</body></html>", {"Content-Type": "text/html"}),
    "not json": Reply(200, b"action=talk"),
    "empty": Reply(200, b""),
    "a list": json_reply([{"action": "talk", "text": "x"}]),
    "unknown action": json_reply({"action": "transfer", "to": "x"}),
    "talk without text": json_reply({"action": "talk"}),
    "talk too long": json_reply({"action": "talk", "text": "x" * 1001}),
    "open with bad ttl": json_reply({"action": "open", "participant": {"number": DAVE}, "ttl": 0}),
    "open with a huge metadata": json_reply(
        {"action": "open", "participant": {"number": DAVE}, "metadata": {"x": "y" * 9000}}
    ),
    "a 201": json_reply({"action": "talk", "text": "x"}, status=201),
    "a redirect": Reply(307, b"", {"Location": "/elsewhere"}),  # to the hook server itself
    "a huge body": Reply(200, b"{" + b" " * (70 * 1024) + b"}"),
    "silence": HANG,
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_anything_else_plays_todays_message(client, conversation, hook, service, name, caplog):
    hook.reply = GARBAGE[name]
    ncco = _answer(client)
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.unknown_caller_text
    call = Call.objects.get(uuid="leg-oos")
    assert call.hook_outcome == "default" and call.hook_detail
    assert Conversation.objects.count() == 1
    assert [r["path"] for r in hook.requests] == ["/hooks"]  # a redirect is never followed
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "out-of-session hook" in logged and CAROL not in logged and DAVE not in logged


def test_a_private_address_is_refused_unless_allowed(client, conversation, hook, service, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    ncco = _answer(client)
    assert ncco[0]["text"] == service.unknown_caller_text and hook.requests == []


def test_a_number_of_no_service_asks_nobody(client, conversation, hook):
    ncco = _answer(client, {**CALL, "to": "12015550299"})
    assert actions(ncco) == ["talk"] and hook.requests == []


def test_without_the_hook_the_unknown_caller_path_is_unchanged(
    client, conversation, service, django_assert_num_queries
):
    service.callback_url = "https://hooks.example.com/events"
    service.save()
    with django_assert_num_queries(2):  # the open pair, then the number's owner (with the cooling probe)
        ncco = _answer(client)
    assert ncco[0]["text"] == service.unknown_caller_text
    assert not Call.objects.exists() and not CallbackDelivery.objects.exists()


def test_the_leg_a_connect_rang_belongs_to_no_conversation(client, conversation, hook, service):
    from tests.webhooks.conftest import post_json

    # The hook puts Carol through to Alice, who holds 12015550200 with Bob: the leg from
    # 12015550200 to Alice must not pass for a call of that conversation.
    hook.reply = json_reply({"action": "connect", "number": "+" + ALICE})
    ncco = _answer(client)
    assert ncco[0]["endpoint"][0]["number"] == ALICE
    leg = {"uuid": "leg-out", "conversation_uuid": "CON-oos", "from": "12015550200", "to": ALICE}
    post_json(client, "/webhooks/event", {**leg, "status": "started", "direction": "outbound"})
    post_json(client, "/webhooks/event", {**CALL, "status": "started", "direction": "inbound"})
    outbound, inbound = Call.objects.get(uuid="leg-out"), Call.objects.get(uuid="leg-oos")
    assert outbound.conversation is None and outbound.service == service and outbound.direction == "outbound"
    assert inbound.conversation is None and inbound.hook_outcome == "connect"
    assert conversation.calls.count() == 0
