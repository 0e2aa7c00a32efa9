"""End to end over real HTTP: a conversation opened over the API, texts played as Vonage delivers
them (signed, in parts when long), relayed through the sandbox, receipts back, the API's list."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

from harness.callplayer import HttpTransport
from harness.smsplayer import receipts_play, sms_play
from proxy.api_keys import api_key_create
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB
from tests.factories import ServiceFactory, VirtualNumberFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "e2e-sms-signature-secret"


@pytest.fixture
def server(live_server, settings):
    settings.PUBLIC_URL = live_server.url
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_SIGNATURE_METHOD = "sha256"
    settings.VONAGE_PROVIDER = "sandbox"
    cache.clear()
    return live_server.url


@pytest.fixture
def opened(server):
    service = ServiceFactory(slug="e2e-sms", name="E2E Deliveries", default_country="US")
    for n in (200, 201):
        VirtualNumberFactory(service=service, number=f"1201555{n:04d}")
    key = api_key_create(service=service)[1]
    body = {"participants": [{"number": "+" + ALICE}, {"number": "+" + BOB}], "notify": False}
    conversation = _api(server, key, "POST", "/conversations", json=body).json()
    people = {p["number"]: p for p in conversation["participants"]}
    return key, conversation, people[ALICE], people[BOB]


def _api(server, key, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {key}"}
    return requests.request(method, f"{server}/api/v1{path}", headers=headers, timeout=10, **kwargs)


def test_a_long_unicode_text_is_relayed_joined_and_its_receipt_comes_back(server, opened):
    key, conversation, alice, bob = opened
    text = "Je suis devant la porte B, voiture bleue 🚙, plaque AB-123-CD. " * 3
    play = sms_play(
        HttpTransport(server), sender=ALICE, to=alice["proxy_number"], text=text, secret=SECRET, method="sha256"
    )
    assert play.ok and len(play.steps) == 3  # three concatenated parts
    sent = SandboxMessage.objects.get(part=1)
    assert (sent.text, sent.from_number, sent.to_number) == (text, bob["proxy_number"], BOB)
    receipts = receipts_play(HttpTransport(server), messages=[sent], secret=SECRET, method="sha256")
    assert receipts.ok
    listed = _api(server, key, "GET", f"/conversations/{conversation['id']}/messages").json()["results"]
    assert [(m["from_participant"], m["to_participant"], m["status"], m["text"]) for m in listed] == [
        (alice["id"], bob["id"], "delivered", text)
    ]


def test_the_service_texts_a_participant_over_the_api(server, opened):
    key, conversation, alice, _ = opened
    response = _api(
        server, key, "POST", f"/conversations/{conversation['id']}/messages",
        json={"to_participant": alice["id"], "text": "Your courier is at the door."},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    sent = SandboxMessage.objects.get()
    assert (sent.from_number, sent.to_number) == (alice["proxy_number"], ALICE)


def test_simulate_sms_command_relays_and_shows_the_relay_masked(server, opened, capsys):
    _, _, alice, bob = opened
    call_command("simulate_sms", "--from", "+" + ALICE, "--to", alice["proxy_number"], "--text", "blue car",
                 "--url", server, "--wait", "0")  # fmt: skip
    out = capsys.readouterr().out
    assert f"sandbox sent {bob['proxy_number']} -> 1201****102: 'blue car'" in out
    assert "SMS played: 2 webhooks accepted." in out
    assert ALICE not in out and BOB not in out


def test_simulate_sms_command_fails_when_the_server_cannot_be_reached(server):
    with pytest.raises(CommandError) as caught:
        call_command(
            "simulate_sms", "--from", ALICE, "--to", "12015550200", "--text", "x", "--url", "http://127.0.0.1:9"
        )
    assert caught.value.returncode == 2


def test_a_badly_signed_text_is_refused(server, opened, settings):
    _, _, alice, _ = opened
    play = sms_play(HttpTransport(server), sender=ALICE, to=alice["proxy_number"], text="hi", secret="wrong")
    assert not play.ok and play.exit_code == 1 and "401" in play.error
    assert not SandboxMessage.objects.exists()
