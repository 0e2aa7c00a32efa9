"""Opening conversations with PINs on: who gets which PIN and number, in the API and the SMS."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from proxy.errors import PoolExhausted
from proxy.models import Participant, Service
from proxy.notifications import notification_text_render
from proxy.selectors import route_for_call
from proxy.services import conversation_close, conversation_create
from tests.conftest import ALICE, BOB, CAROL, UK_PERSON
from tests.factories import ServiceFactory, VirtualNumberFactory

pytestmark = pytest.mark.django_db

DAVE = "12015550104"


def open_(service, a=ALICE, b=BOB, **kwargs):
    return conversation_create(service=service, participants=[{"number": a}, {"number": b}], notify=False, **kwargs)


def with_mode(service, mode):
    service.pin_mode = mode
    service.save()
    return service


def test_pins_off_gives_no_pin_and_routes_by_pair(service, pool):
    conversation = open_(service)
    assert [(p.pin, p.routes_by_pair) for p in conversation.participants.all()] == [(None, True), (None, True)]


def test_fallback_gives_each_participant_a_pin_and_keeps_the_pair_rule(service):
    with_mode(service, Service.PinMode.FALLBACK)
    only = VirtualNumberFactory(service=service, number="12015550200")
    conversation = open_(service)
    alice, bob = conversation.participants.order_by("position")
    assert alice.pin and bob.pin and alice.pin != bob.pin  # same number, different PINs
    assert len(alice.pin) == 6 and alice.pin.isdigit()
    assert alice.routes_by_pair and bob.routes_by_pair
    assert route_for_call(caller=ALICE, proxy_number=only.number).kind == "connect"
    # The pair rule still holds: Alice cannot hold the only number twice.
    with pytest.raises(PoolExhausted):
        open_(service, ALICE, CAROL)


def test_always_serves_a_whole_marketplace_from_one_number_per_country(service):
    with_mode(service, Service.PinMode.ALWAYS)
    us = VirtualNumberFactory(service=service, number="12015550200", country="US")
    gb = VirtualNumberFactory(service=service, number="447400000001", country="GB")
    buyers = [f"1201555{n:04d}" for n in range(110, 140)]
    for buyer in buyers:
        open_(service, ALICE, buyer)  # Alice, a busy seller, in 30 conversations
    open_(service, UK_PERSON, BOB)
    live = Participant.objects.filter(active=True)
    alice = live.filter(real_number=ALICE)
    assert alice.count() == 30 and set(alice.values_list("proxy_number", flat=True)) == {us.number}
    assert live.get(real_number=UK_PERSON).proxy_number_id == gb.number
    on_us = list(live.filter(proxy_number=us).values_list("pin", flat=True))
    assert len(on_us) == len(set(on_us)) == 61  # 30 x 2 + Bob
    assert not live.filter(routes_by_pair=True).exists()
    # Caller ID decides nothing: Alice calling her number is asked for a PIN.
    assert route_for_call(caller=ALICE, proxy_number=us.number).kind == "pin"


def test_always_ignores_cooling_pairs_that_would_block_a_pair_service(service):
    with_mode(service, Service.PinMode.ALWAYS)
    VirtualNumberFactory(service=service, number="12015550200")
    first = open_(service, ALICE, BOB)
    conversation_close(conversation=first)
    second = open_(service, ALICE, CAROL)  # a pair service would answer 409: the pair cools down
    assert second.participants.get(real_number=ALICE).proxy_number_id == "12015550200"


def test_a_pin_collision_is_retried_as_an_allocation_race(service, monkeypatch):
    with_mode(service, Service.PinMode.FALLBACK)
    VirtualNumberFactory(service=service, number="12015550200")
    taken = open_(service).participants.get(real_number=ALICE).pin
    calls = []

    def choose(*, proxy_numbers, now, draw=None):
        # What a creation that drew at the same moment as another would hold: a PIN that
        # is taken by the time it inserts. The unique index refuses it; the retry draws again.
        calls.append(1)
        if len(calls) == 1:
            return [taken for _ in proxy_numbers][:1] + ["100001"] * (len(proxy_numbers) - 1)
        return ["200002", "300003"][: len(proxy_numbers)]

    monkeypatch.setattr("proxy.services.pins_choose", choose)
    conversation = open_(service, CAROL, DAVE)
    assert len(calls) == 2
    assert sorted(p.pin for p in conversation.participants.all()) == ["200002", "300003"]


def test_pins_that_keep_colliding_end_in_a_clean_409(service, monkeypatch):
    with_mode(service, Service.PinMode.FALLBACK)
    VirtualNumberFactory(service=service, number="12015550200")
    taken = open_(service).participants.get(real_number=ALICE).pin
    monkeypatch.setattr("proxy.services.pins_choose", lambda *, proxy_numbers, now: [taken, "100001"])
    with pytest.raises(PoolExhausted):
        open_(service, CAROL, DAVE)
    assert Participant.objects.filter(pin=taken).count() == 1


def test_a_number_with_no_pin_left_is_a_409_not_an_error(service, monkeypatch):
    with_mode(service, Service.PinMode.ALWAYS)
    VirtualNumberFactory(service=service, number="12015550200")
    held = open_(service).participants.get(real_number=ALICE).pin
    monkeypatch.setattr("proxy.pins.pin_draw", lambda: held)
    with pytest.raises(PoolExhausted) as raised:
        open_(service, CAROL, DAVE)
    assert "No PIN is free" in raised.value.detail


def test_mode_changes_apply_to_new_conversations_only(service):
    VirtualNumberFactory(service=service, number="12015550200")
    VirtualNumberFactory(service=service, number="12015550201")
    with_mode(service, Service.PinMode.ALWAYS)
    by_pin = open_(service, ALICE, BOB)
    with_mode(service, Service.PinMode.OFF)
    by_pair = open_(service, ALICE, CAROL)
    assert not any(p.routes_by_pair for p in by_pin.participants.all())
    assert all(p.routes_by_pair and p.pin is None for p in by_pair.participants.all())
    # Alice's pair routes her new conversation; the old one still answers its PINs.
    alice_dials = by_pair.participants.get(real_number=ALICE).proxy_number_id
    route = route_for_call(caller=ALICE, proxy_number=alice_dials)
    assert route.kind == "connect" and route.callee.real_number == CAROL


def test_the_constraint_backs_the_chooser(service):
    with_mode(service, Service.PinMode.ALWAYS)
    VirtualNumberFactory(service=service, number="12015550200")
    alice = open_(service).participants.get(real_number=ALICE)
    with pytest.raises(IntegrityError):
        Participant.objects.filter(real_number=BOB, active=True).update(pin=alice.pin)


# --- The API and the SMS ---------------------------------------------------------------------------


def test_the_api_shows_each_participants_pin(api, service, pool):
    with_mode(service, Service.PinMode.FALLBACK)
    body = {"participants": [{"number": ALICE}, {"number": BOB}], "notify": False}
    created = api.post("/api/v1/conversations", body, format="json")
    assert created.status_code == 201
    pins = {p["number"]: p["pin"] for p in created.json()["participants"]}
    stored = dict(Participant.objects.values_list("real_number", "pin"))
    assert pins == stored and all(len(pin) == 6 for pin in pins.values())
    shown = api.get(f"/api/v1/conversations/{created.json()['id']}").json()
    assert {p["number"]: p["pin"] for p in shown["participants"]} == pins


def test_the_sms_names_the_pin(service, pool):
    with_mode(service, Service.PinMode.FALLBACK)
    conversation = conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
    for participant in conversation.participants.all():
        text = participant.notifications.get().text
        assert f"When asked, enter PIN {participant.pin}." in text
        assert ALICE not in text and BOB not in text


def test_the_pin_sentence_follows_the_language_and_templates_may_place_it(service):
    VirtualNumberFactory(service=service, number="12015550200")
    alice = Participant(real_number=ALICE, proxy_number_id="12015550200", pin="123456", name="Alice")
    bob = Participant(real_number=BOB, proxy_number_id="12015550200", pin="654321", name="Bob")
    service.language = "fr-FR"
    assert notification_text_render(service=service, recipient=alice, counterpart=bob).endswith(
        "Quand on vous le demande, tapez le code 123456."
    )
    service.sms_template = "Call {proxy_number} and key in {pin}#"
    text = notification_text_render(service=service, recipient=alice, counterpart=bob)
    assert text.endswith("key in 123456#") and text.count("123456") == 1
    alice.pin = None
    assert notification_text_render(service=service, recipient=alice, counterpart=bob).endswith("key in #")


def test_a_pin_that_reads_like_the_end_of_a_real_number_still_reaches_the_sms(service):
    # The text is scrubbed of anything reading as a participant's real number; the PIN
    # is put in after that, so it survives even when it matches a number's last digits.
    alice = Participant(real_number=ALICE, proxy_number_id="12015550200", pin=ALICE[-6:])
    bob = Participant(real_number=BOB, proxy_number_id="12015550201")
    assert ALICE[-6:] in notification_text_render(service=service, recipient=alice, counterpart=bob)


def test_a_service_in_another_country_gets_pins_too():
    service = ServiceFactory(slug="uk", default_country="GB", pin_mode=Service.PinMode.ALWAYS)
    VirtualNumberFactory(service=service, number="447400000001", country="GB")
    conversation = conversation_create(
        service=service, participants=[{"number": UK_PERSON}, {"number": "447507123456"}], notify=False
    )
    assert all(p.pin and not p.routes_by_pair for p in conversation.participants.all())
