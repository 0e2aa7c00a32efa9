"""PIN calls through the webhooks: the prompt, the input event, tries, brute force, the call log."""

from __future__ import annotations

import itertools
import json
import logging
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.utils import timezone

from proxy.models import Call, CallEvent, Participant, PinCall, Service
from proxy.ncco import GENERIC_UNKNOWN_TEXT
from proxy.pins import Prompt, prompt_token
from proxy.services import conversation_close, conversation_create
from telephony.ncco import ncco_validate
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory
from tests.webhooks.conftest import actions, answered, post_json
from webhooks.signatures import sign_voice_webhook

pytestmark = pytest.mark.django_db

STRANGER = "12015550155"
_clock = itertools.count()


def pin_conversation(service, a, b, *, numbers, pins, routes_by_pair=True):
    """An open conversation of ``a`` (dials numbers[0]) and ``b`` (dials numbers[1]) with these PINs."""
    conversation = ConversationFactory(service=service)
    for position, (real, number, pin) in enumerate(zip((a, b), numbers, pins, strict=True)):
        ParticipantFactory(
            conversation=conversation,
            position=position,
            real_number=real,
            proxy_number=number,
            pin=pin,
            routes_by_pair=routes_by_pair,
        )
    return conversation


@pytest.fixture
def conversation(service, pool):
    """Fallback mode: Alice (PIN 111111) dials 12015550200 to reach Bob; Bob (PIN 222222) dials 12015550202."""
    service.pin_mode = Service.PinMode.FALLBACK
    service.save()
    return pin_conversation(service, ALICE, BOB, numbers=(pool[0], pool[2]), pins=("111111", "222222"))


@pytest.fixture
def carol_on_alices_number(service, pool):
    """Another open PIN conversation on Alice's number (Carol, PIN 333333) and on 12015550201."""
    return pin_conversation(service, CAROL, STRANGER, numbers=(pool[0], pool[1]), pins=("333333", "444444"))


def person(conversation, number) -> Participant:
    return conversation.participants.get(real_number=number)


def answer(client, caller, dialled, uuid="call-1"):
    return answered(client, {"from": caller, "to": dialled, "uuid": uuid, "conversation_uuid": f"CON-{uuid}"}).json()


def input_event(caller, dialled, *, keys="", uuid="call-1", speech=None, **extra):
    return {
        "from": caller,
        "to": dialled,
        "uuid": uuid,
        "conversation_uuid": f"CON-{uuid}",
        "dtmf": {"digits": keys, "timed_out": not keys},
        "speech": speech,
        # Each try is its own event; a repeat of one carries the same timestamp.
        "timestamp": f"2026-12-03T10:00:{next(_clock) % 60:02d}.{next(_clock) % 1000:03d}Z",
        **extra,
    }


def send_input(client, ncco, payload, **headers):
    """POST the input event to the eventUrl the prompt gave (path and query, as Vonage would)."""
    url = urlsplit(ncco[-1]["eventUrl"][0])
    response = post_json(client, f"{url.path}?{url.query}", payload, **headers)
    assert response.status_code == 200, response.content
    answered = response.json()
    ncco_validate(answered)
    return answered


def assert_prompt(ncco, service, *, lead=""):
    assert actions(ncco) == ["talk", "input"]
    talk, ask = ncco
    assert talk["text"] == f"{lead} {service.pin_prompt_text}".strip()
    assert talk["bargeIn"] is True
    assert ask["type"] == ["dtmf"]
    assert ask["dtmf"]["maxDigits"] == 6
    url = urlsplit(ask["eventUrl"][0])
    assert url.path == "/webhooks/input" and url.query.startswith("prompt=")


def assert_connects_bob(ncco, conversation):
    assert ncco[-1]["action"] == "connect"
    assert ncco[-1]["endpoint"] == [{"type": "phone", "number": BOB}]
    assert ncco[-1]["from"] == person(conversation, BOB).proxy_number_id


# --- Fallback -------------------------------------------------------------------------------------


def test_a_matching_pair_still_routes_directly_in_one_read(client, conversation, django_assert_num_queries):
    alice = person(conversation, ALICE)
    with django_assert_num_queries(1):
        ncco = answer(client, ALICE, alice.proxy_number_id)
    assert_connects_bob(ncco, conversation)


@pytest.mark.parametrize("caller", [STRANGER, "Unknown", "", "sip:alice@example.com"])
def test_anyone_else_is_asked_for_a_pin(client, conversation, service, caller):
    assert_prompt(answer(client, caller, person(conversation, ALICE).proxy_number_id), service)


def test_the_right_pin_connects_exactly_as_the_owner_calling_from_their_phone(client, conversation):
    alice = person(conversation, ALICE)
    direct = answer(client, ALICE, alice.proxy_number_id, uuid="direct")
    prompt = answer(client, "Unknown", alice.proxy_number_id)
    connected = send_input(client, prompt, input_event("Unknown", alice.proxy_number_id, keys=alice.pin))
    assert_connects_bob(connected, conversation)
    assert connected == direct


def test_bob_can_call_from_the_depot_phone_with_his_pin(client, conversation):
    bob = person(conversation, BOB)
    prompt = answer(client, STRANGER, bob.proxy_number_id)
    connected = send_input(client, prompt, input_event(STRANGER, bob.proxy_number_id, keys=bob.pin))
    assert connected[-1]["endpoint"] == [{"type": "phone", "number": ALICE}]
    assert connected[-1]["from"] == person(conversation, ALICE).proxy_number_id


def test_a_pin_on_another_number_is_wrong_here(client, conversation, carol_on_alices_number, service):
    alice = person(conversation, ALICE)
    prompt = answer(client, "Unknown", "12015550201")  # the stranger's number, where only 444444 is open
    retried = send_input(client, prompt, input_event("Unknown", "12015550201", keys=alice.pin))
    assert_prompt(retried, service, lead=service.pin_invalid_text)


@pytest.mark.parametrize(
    ("keys", "speech", "lead"),
    [
        ("000000", None, "pin_invalid_text"),
        ("12345", None, "pin_invalid_text"),
        ("*", None, "pin_invalid_text"),
        ("#", None, "pin_invalid_text"),
        ("12#4*6", None, "pin_invalid_text"),
        ("", None, "pin_no_input_text"),
        ("", {"results": [{"text": "one two three", "confidence": "0.9"}]}, "pin_no_input_text"),
    ],
)
def test_bad_input_hears_why_and_the_prompt_again(client, conversation, service, keys, speech, lead):
    alice = person(conversation, ALICE)
    if keys == alice.pin:
        keys = "000001"
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    again = send_input(client, prompt, input_event(STRANGER, alice.proxy_number_id, keys=keys, speech=speech))
    assert_prompt(again, service, lead=getattr(service, lead))
    assert "connect" not in actions(again)


def test_three_wrong_tries_then_goodbye_and_no_connect(client, conversation, service):
    alice = person(conversation, ALICE)
    wrong = "000000" if alice.pin != "000000" else "000001"
    ncco = answer(client, STRANGER, alice.proxy_number_id)
    for _ in range(2):
        ncco = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=wrong))
        assert_prompt(ncco, service, lead=service.pin_invalid_text)
    goodbye = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=wrong))
    assert actions(goodbye) == ["talk"] and goodbye[0]["text"] == service.pin_goodbye_text
    record = PinCall.objects.get(call_uuid="call-1")
    assert (record.tries, record.wrong_pins, record.outcome) == (3, 3, "failed")


def test_a_wrong_try_then_the_right_pin_connects(client, conversation, service):
    alice = person(conversation, ALICE)
    ncco = answer(client, STRANGER, alice.proxy_number_id)
    ncco = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=""))
    ncco = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys="12"))
    connected = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=alice.pin))
    assert_connects_bob(connected, conversation)
    record = PinCall.objects.get(call_uuid="call-1")
    assert (record.tries, record.wrong_pins, record.outcome, record.participant) == (3, 1, "connected", alice)


def test_the_same_event_twice_counts_one_try_and_gets_the_same_answer(client, conversation, service, monkeypatch):
    # The prompt token carries the second it was signed in: the two answers are only equal
    # when both are signed in the same second, so the signer's clock stands still here.
    now = signing.TimestampSigner().timestamp()
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: now)
    alice = person(conversation, ALICE)
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    event = input_event(STRANGER, alice.proxy_number_id, keys="000000" if alice.pin != "000000" else "000001")
    first = send_input(client, prompt, event)
    second = send_input(client, prompt, event)
    assert first == second
    record = PinCall.objects.get(call_uuid="call-1")
    assert (record.tries, record.wrong_pins) == (1, 1)
    assert CallEvent.objects.filter(kind="input").count() == 1
    # A repeat of the connecting event connects again (Vonage retries when it got no answer).
    right = input_event(STRANGER, alice.proxy_number_id, keys=alice.pin)
    assert send_input(client, first, right) == send_input(client, first, right)
    assert PinCall.objects.get(call_uuid="call-1").tries == 2


def test_a_pin_of_an_ended_conversation_says_so_and_connects_nobody(
    client, conversation, carol_on_alices_number, service
):
    alice = person(conversation, ALICE)
    # Carol's open PIN conversation keeps Alice's number asking for PINs.
    conversation_close(conversation=conversation)
    prompt = answer(client, "Unknown", alice.proxy_number_id)
    ended = send_input(client, prompt, input_event("Unknown", alice.proxy_number_id, keys=alice.pin))
    assert actions(ended) == ["talk"] and ended[0]["text"] == service.ended_text
    assert PinCall.objects.get(call_uuid="call-1").outcome == "ended"


def test_once_no_pin_conversation_is_open_the_number_says_what_it_said_before(client, conversation, service):
    alice = person(conversation, ALICE)
    conversation_close(conversation=conversation)
    ncco = answer(client, STRANGER, alice.proxy_number_id)
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.unknown_caller_text
    ended = answer(client, ALICE, alice.proxy_number_id)
    assert actions(ended) == ["talk"] and ended[0]["text"] == service.ended_text


def test_a_cooling_caller_on_a_number_with_open_pins_is_asked_for_a_pin(
    client, conversation, carol_on_alices_number, service
):
    alice = person(conversation, ALICE)
    conversation_close(conversation=conversation)
    assert_prompt(answer(client, ALICE, alice.proxy_number_id), service)


# --- Always ---------------------------------------------------------------------------------------


@pytest.fixture
def marketplace(service):
    """PIN mode always, one number: Alice sells to Bob and to Carol through 12015550200."""
    service.pin_mode = Service.PinMode.ALWAYS
    service.save()
    VirtualNumberFactory(service=service, number="12015550200")
    to_bob = conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)
    to_carol = conversation_create(service=service, participants=[{"number": ALICE}, {"number": CAROL}], notify=False)
    return to_bob, to_carol


def test_always_asks_everyone_even_a_participant_and_the_pin_chooses(client, marketplace, service):
    to_bob, to_carol = marketplace
    prompt = answer(client, ALICE, "12015550200")
    assert_prompt(prompt, service)
    alice_to_carol = to_carol.participants.get(real_number=ALICE)
    connected = send_input(client, prompt, input_event(ALICE, "12015550200", keys=alice_to_carol.pin))
    assert connected[-1]["endpoint"] == [{"type": "phone", "number": CAROL}]
    assert connected[-1]["from"] == "12015550200"
    prompt = answer(client, ALICE, "12015550200", uuid="call-2")
    alice_to_bob = to_bob.participants.get(real_number=ALICE)
    connected = send_input(client, prompt, input_event(ALICE, "12015550200", uuid="call-2", keys=alice_to_bob.pin))
    assert connected[-1]["endpoint"] == [{"type": "phone", "number": BOB}]


def test_always_a_participants_own_pin_alone_does_not_route_by_caller_id(client, marketplace, service):
    prompt = answer(client, BOB, "12015550200")
    goodbye = prompt
    for _ in range(3):
        goodbye = send_input(client, goodbye, input_event(BOB, "12015550200", keys=""))
    assert actions(goodbye) == ["talk"] and goodbye[0]["text"] == service.pin_goodbye_text


# --- Calls that never prompted, signatures, garbage ------------------------------------------------


def test_an_input_event_without_a_prompt_hears_a_message_and_connects_nobody(client, conversation, service):
    alice = person(conversation, ALICE)
    event = input_event(STRANGER, alice.proxy_number_id, keys=alice.pin)
    for n, url in enumerate(("/webhooks/input", "/webhooks/input?prompt=forged", "/webhooks/event")):
        response = post_json(client, url, {**event, "timestamp": f"2026-12-03T11:00:0{n}.000Z"})
        assert response.status_code == 200
        ncco = response.json()
        ncco_validate(ncco)
        assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.unknown_caller_text
    assert not PinCall.objects.exists()


def test_a_prompt_token_of_another_call_is_refused(client, conversation, service):
    alice = person(conversation, ALICE)
    token = prompt_token(Prompt(call_uuid="someone-else", proxy_number=alice.proxy_number_id, try_number=1))
    event = input_event(STRANGER, alice.proxy_number_id, keys=alice.pin)
    ncco = post_json(client, f"/webhooks/input?prompt={token}", event).json()
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == service.unknown_caller_text


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'"x"', b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b"{}", b'{"dtmf": 5}']
)
def test_garbage_input_gets_a_spoken_answer_never_an_error(client, conversation, body):
    alice = person(conversation, ALICE)
    token = prompt_token(Prompt(call_uuid="call-1", proxy_number=alice.proxy_number_id, try_number=1))
    for url in ("/webhooks/input", f"/webhooks/input?prompt={token}"):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 200
        ncco = response.json()
        ncco_validate(ncco)
        assert "connect" not in actions(ncco)


def test_a_failure_inside_still_answers_with_a_message(client, conversation, monkeypatch):
    alice = person(conversation, ALICE)

    def broken(**kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr("webhooks.pin_services.pin_owner", broken)
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    ncco = send_input(client, prompt, input_event(STRANGER, alice.proxy_number_id, keys=alice.pin))
    assert actions(ncco) == ["talk"]


def test_input_events_are_signed_like_every_voice_webhook(client, conversation, settings):
    secret = "pin-input-signature-secret-of-32-bytes"
    settings.VONAGE_SIGNATURE_SECRET = secret
    alice = person(conversation, ALICE)
    token = prompt_token(Prompt(call_uuid="call-1", proxy_number=alice.proxy_number_id, try_number=1))
    payload = input_event(STRANGER, alice.proxy_number_id, keys=alice.pin)
    url = f"/webhooks/input?prompt={token}"
    assert post_json(client, url, payload).status_code == 401
    bad = sign_voice_webhook(body=b"{}", secret=secret)
    assert post_json(client, url, payload, HTTP_AUTHORIZATION=f"Bearer {bad}").status_code == 401
    assert not PinCall.objects.exists()
    body = json.dumps(payload).encode()
    good = sign_voice_webhook(body=body, secret=secret)
    response = client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {good}")
    assert response.status_code == 200 and response.json()[-1]["action"] == "connect"


def test_an_input_event_through_the_fallback_url_is_handled_once(client, conversation):
    alice = person(conversation, ALICE)
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    event = input_event(STRANGER, alice.proxy_number_id, keys=alice.pin)
    fallback = {**event, "reason": "timeout", "original_request": {"url": prompt[-1]["eventUrl"][0], "type": "event"}}
    ncco = post_json(client, "/webhooks/fallback", fallback).json()
    ncco_validate(ncco)
    assert_connects_bob(ncco, conversation)
    # The original delivery arriving late is the same event: applied once.
    assert send_input(client, prompt, event) == ncco
    assert PinCall.objects.get().tries == 1
    assert CallEvent.objects.filter(kind="input").count() == 1


# --- Secrets stay secret ----------------------------------------------------------------------------


def test_pins_are_neither_logged_nor_stored_in_events(client, conversation, caplog):
    alice = person(conversation, ALICE)
    caplog.set_level(logging.DEBUG)
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    ncco = send_input(client, prompt, input_event(STRANGER, alice.proxy_number_id, keys="000000"))
    send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=alice.pin))
    assert caplog.records, "the calls were logged"
    for record in caplog.records:
        assert alice.pin not in record.getMessage() and "000000" not in record.getMessage()
    stored = [event.payload for event in CallEvent.objects.filter(kind="input")]
    assert len(stored) == 2
    assert all(event["dtmf"]["digits"] == "[6 keys redacted]" for event in stored)
    assert alice.pin not in str(stored)


# --- Brute force ----------------------------------------------------------------------------------


def fail_a_call(client, caller, dialled, uuid, wrong="000000"):
    ncco = answer(client, caller, dialled, uuid=uuid)
    assert actions(ncco) == ["talk", "input"], ncco
    return send_input(client, ncco, input_event(caller, dialled, uuid=uuid, keys=wrong))


def test_three_failed_calls_in_a_row_lock_the_caller_out_for_an_hour(client, conversation, service):
    alice = person(conversation, ALICE)
    number = alice.proxy_number_id
    wrong = "000000" if alice.pin != "000000" else "000001"
    for n in range(3):
        fail_a_call(client, STRANGER, number, f"bf-{n}", wrong)  # hangs up after one wrong PIN
    locked = PinCall.objects.get(call_uuid="bf-2")
    assert locked.locked_until is not None
    assert timedelta(minutes=59) < locked.locked_until - timezone.now() <= timedelta(hours=1)

    goodbye = answer(client, STRANGER, number, uuid="bf-3")
    assert actions(goodbye) == ["talk"] and goodbye[0]["text"] == service.pin_goodbye_text
    # Someone else on that number, and the same caller elsewhere, are not locked out.
    assert_prompt(answer(client, CAROL, number, uuid="other-caller"), service)
    # The pair still routes directly.
    assert_connects_bob(answer(client, ALICE, number, uuid="owner"), conversation)

    # An hour later the caller is asked again.
    PinCall.objects.filter(pk=locked.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert_prompt(answer(client, STRANGER, number, uuid="bf-4"), service)


def test_a_lockout_also_stops_a_call_already_at_the_prompt(client, conversation, service):
    alice = person(conversation, ALICE)
    number = alice.proxy_number_id
    waiting = answer(client, STRANGER, number, uuid="waiting")
    for n in range(3):
        fail_a_call(client, STRANGER, number, f"bf-{n}")
    refused = send_input(client, waiting, input_event(STRANGER, number, uuid="waiting", keys=alice.pin))
    assert actions(refused) == ["talk"] and refused[0]["text"] == service.pin_goodbye_text


def test_a_connected_call_breaks_the_row(client, conversation):
    alice = person(conversation, ALICE)
    number = alice.proxy_number_id
    fail_a_call(client, STRANGER, number, "bf-0")
    fail_a_call(client, STRANGER, number, "bf-1")
    prompt = answer(client, STRANGER, number, uuid="ok")
    send_input(client, prompt, input_event(STRANGER, number, uuid="ok", keys=alice.pin))
    fail_a_call(client, STRANGER, number, "bf-2")
    assert not PinCall.objects.filter(locked_until__isnull=False).exists()


def test_failures_spread_over_more_than_ten_minutes_do_not_lock(client, conversation):
    number = person(conversation, ALICE).proxy_number_id
    fail_a_call(client, STRANGER, number, "bf-0")
    PinCall.objects.filter(call_uuid="bf-0").update(
        failed_at=timezone.now() - timedelta(minutes=11), created_at=timezone.now() - timedelta(minutes=11)
    )
    fail_a_call(client, STRANGER, number, "bf-1")
    fail_a_call(client, STRANGER, number, "bf-2")
    assert not PinCall.objects.filter(locked_until__isnull=False).exists()


def test_a_call_that_only_listened_does_not_count(client, conversation):
    number = person(conversation, ALICE).proxy_number_id
    for n in range(3):
        prompt = answer(client, STRANGER, number, uuid=f"quiet-{n}")
        send_input(client, prompt, input_event(STRANGER, number, uuid=f"quiet-{n}", keys=""))
    assert set(PinCall.objects.values_list("outcome", flat=True)) == {"pending"}
    assert not PinCall.objects.filter(locked_until__isnull=False).exists()


def test_withheld_callers_share_one_lockout_per_number(client, conversation, service):
    number = person(conversation, ALICE).proxy_number_id
    for n in range(3):
        fail_a_call(client, "Unknown", number, f"w-{n}")
    goodbye = answer(client, "", number, uuid="w-3")
    assert actions(goodbye) == ["talk"] and goodbye[0]["text"] == service.pin_goodbye_text


# --- The call log ---------------------------------------------------------------------------------


def event(uuid, caller, dialled, status, direction, conversation_uuid):
    return {
        "from": caller,
        "to": dialled,
        "uuid": uuid,
        "conversation_uuid": conversation_uuid,
        "status": status,
        "direction": direction,
        "timestamp": f"2026-12-03T10:01:{next(_clock) % 60:02d}.000Z",
    }


def test_the_call_log_records_a_pin_call_and_its_connected_leg(client, conversation):
    alice, bob = person(conversation, ALICE), person(conversation, BOB)
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    post_json(
        client, "/webhooks/event", event("call-1", STRANGER, alice.proxy_number_id, "started", "inbound", "CON-call-1")
    )
    assert Call.objects.get(uuid="call-1").conversation is None  # nobody yet: the PIN decides
    send_input(client, prompt, input_event(STRANGER, alice.proxy_number_id, keys=alice.pin))
    post_json(client, "/webhooks/event", event("leg-2", bob.proxy_number_id, BOB, "started", "outbound", "CON-call-1"))
    inbound, outbound = Call.objects.get(uuid="call-1"), Call.objects.get(uuid="leg-2")
    for call in (inbound, outbound):
        assert call.conversation_id == conversation.pk and call.routed_by == "pin"
        assert (call.from_participant, call.to_participant) == (alice, bob)


def test_the_call_log_records_a_pair_call_as_such(client, conversation):
    alice, bob = person(conversation, ALICE), person(conversation, BOB)
    answer(client, ALICE, alice.proxy_number_id)
    post_json(
        client, "/webhooks/event", event("call-1", ALICE, alice.proxy_number_id, "started", "inbound", "CON-call-1")
    )
    post_json(client, "/webhooks/event", event("leg-2", bob.proxy_number_id, BOB, "started", "outbound", "CON-call-1"))
    assert set(Call.objects.values_list("routed_by", flat=True)) == {"pair"}


def test_an_input_event_that_arrives_before_the_calls_first_event_still_links_it(client, conversation):
    alice = person(conversation, ALICE)
    prompt = answer(client, STRANGER, alice.proxy_number_id)
    send_input(client, prompt, input_event(STRANGER, alice.proxy_number_id, keys=alice.pin))
    post_json(
        client, "/webhooks/event", event("call-1", STRANGER, alice.proxy_number_id, "started", "inbound", "CON-call-1")
    )
    call = Call.objects.get(uuid="call-1")
    assert call.routed_by == "pin" and call.status == "started" and call.from_participant == alice


# --- The hot path, and numbers without PINs ---------------------------------------------------------


def test_a_service_without_pins_pays_no_extra_query(client, service, pool, django_assert_num_queries):
    conversation = conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)
    alice_dials = person(conversation, ALICE).proxy_number_id
    with django_assert_num_queries(1):  # a known caller: the pair, as before PINs
        assert answer(client, ALICE, alice_dials)[-1]["action"] == "connect"
    # Anyone else: the pair, then the number's owner read with its open PINs and the
    # caller's cooling pair (before PINs: three reads, the cooling pair on its own).
    with django_assert_num_queries(2):
        ncco = answer(client, STRANGER, alice_dials)
    assert ncco[0]["text"] == service.unknown_caller_text
    with django_assert_num_queries(1):  # withheld: the number's owner only
        answer(client, "Unknown", alice_dials)
    conversation_close(conversation=conversation)
    with django_assert_num_queries(2):  # a late call on a cooling pair, as before PINs
        ncco = answer(client, ALICE, alice_dials)
    assert ncco[0]["text"] == service.ended_text


def test_a_number_nobody_owns_gets_the_generic_message(client, conversation):
    ncco = answer(client, STRANGER, "19999999999")
    assert actions(ncco) == ["talk"] and ncco[0]["text"] == GENERIC_UNKNOWN_TEXT


# --- PIN calls and the marketplace's hooks ---------------------------------------------------------


def test_a_call_routed_by_pin_is_intercepted_the_same_way(client, conversation, service, settings):
    """DESIGN.md, "Intercept": a call routed by PIN asks the intercept hook, as the PIN's
    owner calling from their own phone would; a 403 blocks it, a repeat of the event too."""
    from tests.hook_server import Reply, service_hook

    alice = person(conversation, ALICE)
    with service_hook(settings, service, url_field="intercept_url") as hook:
        hook.reply = Reply(403)
        prompt = answer(client, STRANGER, alice.proxy_number_id)
        event = input_event(STRANGER, alice.proxy_number_id, keys=alice.pin)
        blocked = send_input(client, prompt, event)
        again = send_input(client, prompt, event)
    assert actions(blocked) == ["talk"] and blocked[0]["text"] == service.not_allowed_text
    assert again == blocked
    (request,) = hook.requests  # the repeated event did not ask again
    call = request["json"]["data"]["call"]
    assert (call["uuid"], call["from_participant"]) == ("call-1", str(alice.public_id))
    assert call["to_participant"] == str(person(conversation, BOB).public_id)
    assert Call.objects.get(uuid="call-1").hook_outcome == "blocked"


def test_after_the_last_wrong_try_the_out_of_session_hook_decides(client, conversation, service, settings):
    """DESIGN.md, "Out of session": with PINs open on the number the prompt comes first; the
    hook then decides instead of the goodbye after the third wrong try."""
    from tests.hook_server import json_reply, service_hook

    alice = person(conversation, ALICE)
    wrong = "000000" if alice.pin != "000000" else "000001"
    with service_hook(settings, service, url_field="out_of_session_url") as hook:
        hook.reply = json_reply({"action": "talk", "text": "Call our support line instead."})
        ncco = answer(client, STRANGER, alice.proxy_number_id)
        assert_prompt(ncco, service)
        assert not hook.requests  # the prompt comes first
        for _ in range(2):
            ncco = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=wrong))
        decided = send_input(client, ncco, input_event(STRANGER, alice.proxy_number_id, keys=wrong))
    assert decided == [{"action": "talk", "text": "Call our support line instead.", "language": service.language}]
    (request,) = hook.requests
    assert request["json"]["type"] == "call.out_of_session"
    assert (request["json"]["data"]["from"], request["json"]["data"]["to"]) == (STRANGER, alice.proxy_number_id)


@pytest.mark.django_db(transaction=True)
def test_a_hook_decision_that_cannot_be_kept_leaves_the_callers_transaction_usable(service, monkeypatch):
    """The PIN input event asks the hooks inside its transaction: a failed write of the
    call's row (no callback URL: one statement) must not abort it (PostgreSQL would refuse
    every later statement of the transaction)."""
    from django.db import transaction

    from proxy.models import Service
    from webhooks import call_control

    Service.objects.filter(pk=service.pk).update(callback_url="")
    service.refresh_from_db()
    sql = call_control._call_upsert_sql
    # The statement as it is, into a table that does not exist: PostgreSQL itself refuses it.
    monkeypatch.setattr(
        call_control, "_call_upsert_sql", lambda vendor, linked: sql(vendor, linked).replace("proxy_call", "no_such")
    )
    decision = call_control.CallDecision(
        ncco=[], hook="intercept", event="", outcome="allowed", status_code=204, detail="", elapsed_ms=1
    )
    call = call_control.InboundCall(uuid="leg-x", conversation_uuid="CON-x", caller="1", dialled="2")
    with transaction.atomic():
        call_control._record(decision, service=service, call=call)
        assert Service.objects.filter(pk=service.pk).exists()
