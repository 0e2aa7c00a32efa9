"""PINs: drawing them, the constraint that keeps them unique, and reading what callers key in."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from proxy.models import Participant, Service
from proxy.pins import (
    NoFreePin,
    PinInput,
    Prompt,
    pin_draw,
    pin_input_read,
    pin_owner,
    pins_choose,
    prompt_from_token,
    prompt_token,
)
from proxy.services import conversation_close, conversation_create
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory


def draws(*pins: str):
    """A stand-in for pin_draw that answers these PINs in turn, then keeps counting from 900000."""
    counter = itertools.count(900000)
    supply = iter(pins)
    return lambda: next(supply, None) or f"{next(counter):06d}"


# --- Drawing ---------------------------------------------------------------------------------------


def test_a_pin_is_six_digits_from_the_cryptographic_source(monkeypatch):
    asked = []

    def randbelow(n):
        asked.append(n)
        return 42

    monkeypatch.setattr("proxy.pins.secrets.randbelow", randbelow)
    assert pin_draw() == "000042"
    assert asked == [1_000_000]


def test_real_draws_are_six_digits_and_vary():
    pins = {pin_draw() for _ in range(200)}
    assert all(len(p) == 6 and p.isdigit() for p in pins)
    assert len(pins) > 190


@pytest.mark.django_db
def test_choose_skips_pins_open_or_cooling_on_the_same_number_only(service):
    number, other = VirtualNumberFactory(service=service), VirtualNumberFactory(service=service)
    now = timezone.now()
    conversation = ConversationFactory(service=service)
    ParticipantFactory(conversation=conversation, proxy_number=number, pin="111111")
    ParticipantFactory(
        conversation=conversation,
        proxy_number=number,
        pin="222222",
        active=False,
        cooldown_until=now + timedelta(minutes=5),
    )
    ParticipantFactory(
        conversation=conversation,
        proxy_number=number,
        pin="333333",
        active=False,
        cooldown_until=now - timedelta(minutes=5),
    )
    ParticipantFactory(conversation=conversation, proxy_number=other, pin="444444")

    chosen = pins_choose(
        proxy_numbers=[number.number], now=now, draw=draws("111111", "222222", "333333", "444444", *["0"] * 4)
    )
    assert chosen == ["333333"]  # open and cooling ones skipped; one whose cooldown is over is free again
    assert pins_choose(proxy_numbers=[other.number], now=now, draw=draws("111111")) == ["111111"]


@pytest.mark.django_db
def test_two_participants_on_one_number_never_get_the_same_pin(service):
    number = VirtualNumberFactory(service=service)
    now = timezone.now()
    chosen = pins_choose(proxy_numbers=[number.number, number.number], now=now, draw=draws(*["123456"] * 9))
    assert chosen == ["123456", "900000"]
    # When every draw is the first one's PIN, the second never gets it.
    with pytest.raises(NoFreePin):
        pins_choose(proxy_numbers=[number.number, number.number], now=timezone.now(), draw=lambda: "123456")


@pytest.mark.django_db
def test_choose_draws_again_when_every_candidate_is_taken(service):
    number = VirtualNumberFactory(service=service)
    conversation = ConversationFactory(service=service)
    ParticipantFactory(conversation=conversation, proxy_number=number, pin="555555")
    supply = draws(*["555555"] * 8, "666666")
    assert pins_choose(proxy_numbers=[number.number], now=timezone.now(), draw=supply) == ["666666"]
    with pytest.raises(NoFreePin) as raised:
        pins_choose(proxy_numbers=[number.number], now=timezone.now(), draw=lambda: "555555")
    assert raised.value.proxy_number == number.number


# --- The constraint ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_a_second_open_pin_on_one_number(service):
    number = VirtualNumberFactory(service=service)
    first = ParticipantFactory(conversation=ConversationFactory(service=service), proxy_number=number, pin="777777")
    with pytest.raises(IntegrityError), transaction.atomic():
        ParticipantFactory(conversation=ConversationFactory(service=service), proxy_number=number, pin="777777")
    # On another number, or once the first is no longer open, the same PIN is allowed.
    ParticipantFactory(conversation=ConversationFactory(service=service), pin="777777")
    Participant.objects.filter(pk=first.pk).update(active=False)
    ParticipantFactory(conversation=ConversationFactory(service=service), proxy_number=number, pin="777777")


@pytest.mark.django_db
def test_participants_without_pins_are_not_constrained_by_it(service):
    number = VirtualNumberFactory(service=service)
    for _ in range(3):
        ParticipantFactory(conversation=ConversationFactory(service=service), proxy_number=number, pin=None)
    assert Participant.objects.filter(proxy_number=number).count() == 3


@pytest.mark.django_db
def test_the_pair_constraint_holds_for_pair_routed_participants_only(service):
    number = VirtualNumberFactory(service=service)

    def person(routes_by_pair, pin=None):
        return ParticipantFactory(
            conversation=ConversationFactory(service=service),
            real_number=ALICE,
            proxy_number=number,
            routes_by_pair=routes_by_pair,
            pin=pin,
        )

    person(True)
    with pytest.raises(IntegrityError), transaction.atomic():
        person(True)
    # A participant who routes only by PIN may hold the number any number of times.
    person(False, "100001")
    person(False, "100002")
    assert Participant.objects.filter(real_number=ALICE, proxy_number=number, active=True).count() == 3


# --- The prompt's token -----------------------------------------------------------------------------


def test_a_prompt_token_round_trips_and_refuses_anything_else(settings):
    prompt = Prompt(call_uuid="call-1", proxy_number="12015550200", try_number=2)
    token = prompt_token(prompt)
    assert prompt_from_token(token) == prompt
    assert "12015550101" not in token  # it never carries the caller's number
    for bad in ("", None, "garbage", token[:-2] + "xx", token.replace("e", "f", 1), "x" * 600):
        assert prompt_from_token(bad) is None
    other_salt = signing.dumps({"u": "call-1", "v": "12015550200", "n": 2}, salt="other")
    assert prompt_from_token(other_salt) is None
    wrong_shape = signing.dumps(["call-1"], salt="proxy.pins.prompt")
    assert prompt_from_token(wrong_shape) is None
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"
    assert prompt_from_token(token) is None


def test_a_stale_prompt_token_is_refused(monkeypatch):
    token = prompt_token(Prompt(call_uuid="call-1", proxy_number="12015550200", try_number=1))
    real_time = signing.time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() + 3 * 3600)
    assert prompt_from_token(token) is None


# --- What the caller keyed in -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"dtmf": {"digits": "123456", "timed_out": False}}, PinInput("pin", "123456")),
        ({"dtmf": {"digits": "012345", "timed_out": True}}, PinInput("pin", "012345")),
        ({"dtmf": {"digits": "12345", "timed_out": True}}, PinInput("invalid")),
        ({"dtmf": {"digits": "1234567", "timed_out": False}}, PinInput("invalid")),
        ({"dtmf": {"digits": "12*456", "timed_out": False}}, PinInput("invalid")),
        ({"dtmf": {"digits": "#", "timed_out": False}}, PinInput("invalid")),
        ({"dtmf": {"digits": "*", "timed_out": False}}, PinInput("invalid")),
        ({"dtmf": {"digits": "١٢٣٤٥٦", "timed_out": False}}, PinInput("invalid")),
        ({"dtmf": {"digits": "", "timed_out": True}, "speech": None}, PinInput("empty")),
        ({"dtmf": {"digits": 123456, "timed_out": False}}, PinInput("empty")),
        ({"dtmf": "123456"}, PinInput("empty")),
        ({}, PinInput("empty")),
        (
            {"dtmf": {"digits": ""}, "speech": {"results": [{"text": "one two three", "confidence": "0.9"}]}},
            PinInput("speech"),
        ),
        ({"speech": {"results": []}}, PinInput("empty")),
        ({"speech": {"timeout_reason": "start_timeout"}}, PinInput("empty")),
    ],
)
def test_input_events_are_read_whatever_their_shape(payload, expected):
    assert pin_input_read(payload) == expected


def test_keys_pressed_count_as_a_wrong_pin_and_silence_does_not():
    assert PinInput("pin", "123456").keyed and PinInput("invalid").keyed
    assert not PinInput("empty").keyed and not PinInput("speech").keyed


# --- Whose PIN --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pin_owner_finds_the_open_conversation_and_its_counterpart(service, pool):
    service.pin_mode = Service.PinMode.FALLBACK
    service.save()
    conversation = conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)
    alice = conversation.participants.get(real_number=ALICE)
    now = timezone.now()
    match = pin_owner(proxy_number=alice.proxy_number_id, pin=alice.pin, now=now)
    assert match is not None and match.kind == "live"
    assert match.owner == alice and match.counterpart.real_number == BOB and match.service == service
    wrong = "999999" if alice.pin != "999999" else "999998"
    assert pin_owner(proxy_number=alice.proxy_number_id, pin=wrong, now=now) is None
    elsewhere = VirtualNumberFactory(service=service, number="12015550299")
    assert pin_owner(proxy_number=elsewhere.number, pin=alice.pin, now=now) is None

    conversation_close(conversation=conversation)
    ended = pin_owner(proxy_number=alice.proxy_number_id, pin=alice.pin, now=timezone.now())
    assert ended is not None and ended.kind == "ended" and ended.counterpart is None
    later = timezone.now() + timedelta(seconds=service.cooldown + 1)
    assert pin_owner(proxy_number=alice.proxy_number_id, pin=alice.pin, now=later) is None


@pytest.mark.django_db
def test_an_expired_conversation_the_sweep_has_not_seen_is_ended_then_unknown(service, pool):
    service.pin_mode = Service.PinMode.ALWAYS
    service.save()
    conversation = conversation_create(
        service=service, participants=[{"number": ALICE}, {"number": CAROL}], notify=False, ttl=60
    )
    carol = conversation.participants.get(real_number=CAROL)
    soon = conversation.expires_at + timedelta(seconds=1)
    assert pin_owner(proxy_number=carol.proxy_number_id, pin=carol.pin, now=soon).kind == "ended"
    much_later = conversation.expires_at + timedelta(seconds=service.cooldown + 1)
    assert pin_owner(proxy_number=carol.proxy_number_id, pin=carol.pin, now=much_later) is None


@pytest.mark.django_db
def test_a_participant_the_caller_id_does_not_route_must_have_a_pin(service):
    number = VirtualNumberFactory(service=service)
    with pytest.raises(IntegrityError), transaction.atomic():
        ParticipantFactory(conversation=ConversationFactory(service=service), proxy_number=number, routes_by_pair=False)
    ParticipantFactory(
        conversation=ConversationFactory(service=service), proxy_number=number, routes_by_pair=False, pin="123456"
    )
