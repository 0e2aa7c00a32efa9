"""End to end over real HTTP: the REST API opens a conversation, the call player plays Vonage
against the live server (signed webhooks, NCCO, events), and the call log shows the call."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

from harness.callplayer import HttpTransport, call_play
from proxy.api_keys import api_key_create
from telephony.models import SandboxCall, SandboxMessage
from tests.conftest import ALICE, BOB
from tests.factories import ServiceFactory, VirtualNumberFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "e2e-signature-secret-at-least-32-bytes"


@pytest.fixture
def server(live_server, settings):
    settings.PUBLIC_URL = live_server.url
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.VONAGE_PROVIDER = "sandbox"
    cache.clear()
    return live_server.url


@pytest.fixture
def api_key(server) -> str:
    service = ServiceFactory(slug="e2e", name="E2E Rides", default_country="US")
    for n in (200, 201):
        VirtualNumberFactory(service=service, number=f"1201555{n:04d}")
    return api_key_create(service=service)[1]


def _api(server, api_key, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {api_key}"}
    return requests.request(method, f"{server}/api/v1{path}", headers=headers, timeout=10, **kwargs)


def _open_conversation(server, api_key, **extra):
    body = {"participants": [{"number": "+" + ALICE, "name": "Alice"}, {"number": "+" + BOB, "name": "Bob"}]}
    response = _api(server, api_key, "POST", "/conversations", json={**body, **extra})
    assert response.status_code == 201, response.text
    conversation = response.json()
    by_number = {p["number"]: p for p in conversation["participants"]}
    return conversation, by_number[ALICE], by_number[BOB]


def test_a_simulated_call_reaches_the_right_person_and_lands_in_the_call_log(server, api_key):
    conversation, alice, bob = _open_conversation(server, api_key, notify=False)

    result = call_play(
        transport=HttpTransport(server), caller=ALICE, proxy_number=alice["proxy_number"], duration=75, secret=SECRET
    )

    assert result.ok, "\n".join(result.transcript)
    leg = result.connected
    assert leg is not None
    assert leg.to_number == BOB  # the right person...
    assert leg.from_number == bob["proxy_number"]  # ...seeing the number Bob dials to reach Alice
    assert ALICE not in leg.from_number
    calls = _api(server, api_key, "GET", f"/conversations/{conversation['id']}/calls").json()["results"]
    by_uuid = {call["uuid"]: call for call in calls}
    assert by_uuid[leg.uuid]["status"] == "completed"
    assert by_uuid[leg.uuid]["duration"] == 75
    assert by_uuid[leg.uuid]["price"] is not None
    assert by_uuid[leg.uuid]["to_participant"] == bob["id"]
    assert SandboxCall.objects.get(uuid=leg.uuid).status == "completed"


def test_a_busy_callee_is_logged_and_the_caller_hears_the_unavailable_message(server, api_key):
    conversation, alice, _bob = _open_conversation(server, api_key, notify=False)

    result = call_play(
        transport=HttpTransport(server), caller=ALICE, proxy_number=alice["proxy_number"], outcome="busy", secret=SECRET
    )

    assert result.ok, "\n".join(result.transcript)
    assert result.nccos[-1][0]["action"] == "talk"
    calls = _api(server, api_key, "GET", f"/conversations/{conversation['id']}/calls").json()["results"]
    assert {call["uuid"]: call["status"] for call in calls}[result.connected.uuid] == "busy"


def test_simulate_call_command_exits_zero_against_the_live_server(server, api_key, capsys):
    _conversation, alice, _bob = _open_conversation(server, api_key, notify=False)

    call_command(
        "simulate_call", "--from", "+" + ALICE, "--to", alice["proxy_number"], "--url", server, "--duration", "5"
    )

    out = capsys.readouterr().out
    assert BOB in out
    assert "Call played" in out


def test_simulate_call_command_fails_when_the_server_cannot_be_reached(server):
    with pytest.raises(CommandError) as caught:
        call_command("simulate_call", "--from", ALICE, "--to", "12015550200", "--url", "http://127.0.0.1:9")
    assert caught.value.returncode == 2


def test_opening_a_conversation_texts_each_participant_their_proxy_number(server, api_key):
    _conversation, alice, bob = _open_conversation(server, api_key, notify=True)

    texts = {m.to_number: m.text for m in SandboxMessage.objects.all()}
    assert set(texts) == {ALICE, BOB}
    for person, number in ((alice, ALICE), (bob, BOB)):
        # "+1 201-555-0200": the last four digits survive any human formatting.
        assert person["proxy_number"][-4:] in texts[number]


def test_simulate_call_plays_the_out_of_session_hook_over_http(server, api_key, capsys, settings):
    from proxy.models import Service
    from tests.conftest import CAROL
    from tests.hook_server import hook_server, json_reply

    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    with hook_server() as hook:
        hook.reply = json_reply({"action": "open", "participant": {"number": "+" + BOB, "name": "Support"}})
        Service.objects.filter(slug="e2e").update(out_of_session_url=hook.url)
        call_command("simulate_call", "--from", "+" + CAROL, "--to", "12015550200", "--url", server, "--duration", "5")
    out = capsys.readouterr().out
    assert "marketplace hook call.out_of_session: open (HTTP 200" in out
    assert f"ringing phone {BOB}" in out
    assert hook.requests[0]["json"]["data"]["from"] == CAROL
    (conversation,) = _api(server, api_key, "GET", "/conversations").json()["results"]
    carol = next(p for p in conversation["participants"] if p["number"] == CAROL)
    assert carol["proxy_number"] == "12015550200"
    calls = _api(server, api_key, "GET", f"/conversations/{conversation['id']}/calls").json()["results"]
    hooked = [call for call in calls if call["hook"] is not None]
    assert [(c["hook"]["type"], c["hook"]["outcome"]) for c in hooked] == [("out_of_session", "open")]
