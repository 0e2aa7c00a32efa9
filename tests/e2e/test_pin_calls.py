"""PIN calls end to end over real HTTP: the REST API opens conversations in each PIN mode, the
call player plays Vonage (signed answer, the prompt's input event, the events) against the
live server, and the call log shows how each call was routed."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

from harness.callplayer import WITHHELD_CALLER, HttpTransport, call_play
from proxy.api_keys import api_key_create
from proxy.models import Call, PinCall, Service
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ServiceFactory, VirtualNumberFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "e2e-pin-signature-secret-at-least-32-bytes"
DEPOT = "12015550155"  # a landline nobody registered


@pytest.fixture
def server(live_server, settings):
    settings.PUBLIC_URL = live_server.url
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_PROVIDER = "sandbox"
    cache.clear()
    return live_server.url


def _pin_service(mode: str, numbers: tuple[str, ...]) -> tuple[Service, str]:
    service = ServiceFactory(slug=f"pins-{mode}", name="PIN Rides", default_country="US", pin_mode=mode)
    for number in numbers:
        VirtualNumberFactory(service=service, number=number)
    return service, api_key_create(service=service)[1]


def _open(server, key, a, b, **extra):
    body = {"participants": [{"number": "+" + a}, {"number": "+" + b}], "notify": False, **extra}
    response = requests.post(
        f"{server}/api/v1/conversations", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    conversation = response.json()
    return conversation, {p["number"]: p for p in conversation["participants"]}


def _play(server, caller, dialled, pins=(), **kwargs):
    result = call_play(
        transport=HttpTransport(server), caller=caller, proxy_number=dialled, pins=pins, secret=SECRET, **kwargs
    )
    assert result.ok, "\n".join(result.transcript)
    return result


def test_fallback_a_withheld_caller_reaches_the_other_side_with_their_pin(server):
    _unused, key = _pin_service("fallback", ("12015550200", "12015550201"))
    conversation, people = _open(server, key, ALICE, BOB)
    alice, bob = people[ALICE], people[BOB]
    assert alice["pin"] and bob["pin"] and len(alice["pin"]) == 6

    # Alice's own phone still routes by its number, no PIN asked.
    direct = _play(server, ALICE, alice["proxy_number"])
    assert [a["action"] for a in direct.nccos[0]] == ["connect"]

    # Her network withholds her number: she is asked, keys in her PIN, and reaches Bob,
    # who sees the number he dials to reach her.
    withheld = _play(server, WITHHELD_CALLER, alice["proxy_number"], pins=[alice["pin"]], duration=20)
    assert [a["action"] for a in withheld.nccos[0]] == ["talk", "input"]
    leg = withheld.connected
    assert leg is not None and leg.to_number == BOB and leg.from_number == bob["proxy_number"]

    inbound = Call.objects.get(uuid=withheld.legs[0].uuid)
    outbound = Call.objects.get(uuid=leg.uuid)
    assert (inbound.routed_by, outbound.routed_by) == ("pin", "pin")
    assert str(inbound.conversation_id) == conversation["id"] and outbound.status == "completed"
    assert str(inbound.from_participant.public_id) == alice["id"] and str(inbound.to_participant.public_id) == bob["id"]
    assert Call.objects.get(uuid=direct.legs[0].uuid).routed_by == "pair"


def test_fallback_three_wrong_tries_hear_goodbye_and_ring_nobody(server):
    service, key = _pin_service("fallback", ("12015550200",))
    _conversation, people = _open(server, key, ALICE, BOB)
    wrong = "000000" if people[ALICE]["pin"] != "000000" else "000001"
    result = _play(server, DEPOT, people[ALICE]["proxy_number"], pins=[wrong, "12", "*"])
    assert result.connected is None
    assert result.nccos[-1] == [
        {"action": "talk", "text": service.pin_goodbye_text, "language": "en-US"},
    ]
    record = PinCall.objects.get(call_uuid=result.legs[0].uuid)
    assert (record.tries, record.wrong_pins, record.outcome) == (3, 3, "failed")


def test_always_one_number_serves_a_seller_in_many_conversations(server):
    _unused, key = _pin_service("always", ("12015550200",))
    _c1, with_bob = _open(server, key, ALICE, BOB)
    _c2, with_carol = _open(server, key, ALICE, CAROL)
    assert {with_bob[ALICE]["proxy_number"], with_carol[ALICE]["proxy_number"]} == {"12015550200"}

    # Caller ID decides nothing: Alice calling from her own phone is asked too, and the
    # PIN picks the conversation.
    to_carol = _play(server, ALICE, "12015550200", pins=[with_carol[ALICE]["pin"]])
    assert to_carol.connected.to_number == CAROL and to_carol.connected.from_number == "12015550200"
    to_bob = _play(server, ALICE, "12015550200", pins=["", with_bob[ALICE]["pin"]])
    assert to_bob.connected.to_number == BOB
    # Bob's PIN from the depot phone reaches Alice.
    from_depot = _play(server, DEPOT, "12015550200", pins=[with_bob[BOB]["pin"]])
    assert from_depot.connected.to_number == ALICE


def test_a_caller_who_fails_three_calls_hears_goodbye_at_once(server):
    service, key = _pin_service("always", ("12015550200",))
    _open(server, key, ALICE, BOB)
    for _ in range(3):
        _play(server, DEPOT, "12015550200", pins=["999999"])
    fourth = _play(server, DEPOT, "12015550200", pins=["999999"])
    assert fourth.nccos == [[{"action": "talk", "text": service.pin_goodbye_text, "language": "en-US"}]]


def test_the_sms_names_the_pin(server):
    _unused, key = _pin_service("fallback", ("12015550200",))
    _conversation, people = _open(server, key, ALICE, BOB, notify=True)
    texts = {m.to_number: m.text for m in SandboxMessage.objects.all()}
    assert people[ALICE]["pin"] in texts[ALICE] and people[BOB]["pin"] in texts[BOB]


def test_simulate_call_plays_a_pin_call(server, capsys):
    _unused, key = _pin_service("always", ("12015550200",))
    _conversation, people = _open(server, key, ALICE, BOB)
    pin = people[ALICE]["pin"]

    call_command("simulate_call", "--from", "withheld", "--to", "12015550200", "--pin", pin, "--url", server)

    out = capsys.readouterr().out
    assert "presses 6 keys" in out and f"ringing phone {BOB}" in out and "Call played" in out
    assert pin not in out


def test_simulate_call_with_a_wrong_pin_still_plays_and_rings_nobody(server, capsys):
    _unused, key = _pin_service("always", ("12015550200",))
    _open(server, key, ALICE, BOB)
    call_command("simulate_call", "--from", "+" + CAROL, "--to", "12015550200", "--pin", "1", "--url", server)
    out = capsys.readouterr().out
    assert "Call played" in out and "connect:" not in out and "ringing phone" not in out


def test_simulate_call_fails_when_the_server_cannot_be_reached_with_a_pin_too(server):
    with pytest.raises(CommandError) as caught:
        call_command(
            "simulate_call", "--from", ALICE, "--to", "12015550200", "--pin", "123456", "--url", "http://127.0.0.1:9"
        )
    assert caught.value.returncode == 2
