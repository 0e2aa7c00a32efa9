"""The try-it page: staff only; a sandbox call shows its NCCO and event timeline."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from proxy.models import Call, CallEvent
from proxy.phone import mask
from proxy.services import conversation_create
from telephony.models import SandboxCall, SandboxFailure
from tests.conftest import ALICE, BOB
from tests.console import staff_user

pytestmark = pytest.mark.django_db

URL = "/sandbox/"


@pytest.fixture
def staff_client(client):
    # The sandbox pages are for pool administrators (issue 18), not any staff account.
    client.force_login(staff_user("Administrators"))
    return client


@pytest.fixture
def conversation(service, pool):
    return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)


def test_anonymous_visitors_are_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_non_staff_users_are_sent_to_login(client):
    client.force_login(get_user_model().objects.create_user("joe", password="pw-12345-long"))
    assert client.get(URL).status_code == 302


def test_page_offers_the_open_conversations_participants_masked(staff_client, conversation):
    html = staff_client.get(URL).content.decode()
    alice = conversation.participants.get(real_number=ALICE)
    assert f'value="{alice.pk}"' in html
    assert ALICE not in html


def test_placing_a_call_shows_the_ncco_and_the_event_timeline(staff_client, conversation, settings):
    settings.VONAGE_SIGNATURE_SECRET = "try-it-page-signature-secret-32-bytes"
    alice = conversation.participants.get(real_number=ALICE)
    response = staff_client.post(URL, {"participant": alice.pk, "outcome": "answered", "duration": 12})
    assert response.status_code == 200
    html = response.content.decode()
    assert "every webhook accepted" in html
    assert "&quot;action&quot;: &quot;connect&quot;" in html  # the NCCO, shown as JSON
    assert "POST /webhooks/event" in html  # the timeline
    result = response.context["result"]
    assert [
        step.payload.get("status") for step in result.steps if step.payload.get("uuid") == result.connected.uuid
    ] == [
        "started",
        "ringing",
        "answered",
        "completed",
    ]
    connected = SandboxCall.objects.get(direction="outbound")
    assert (connected.to_number, connected.duration) == (BOB, 12)


def test_a_call_from_an_unknown_number_is_played_too(staff_client, conversation):
    alice = conversation.participants.get(real_number=ALICE)
    response = staff_client.post(
        URL, {"caller": "+1 201 555 0199", "proxy_number": alice.proxy_number_id, "outcome": "answered", "duration": 5}
    )
    actions = [action["action"] for action in response.context["result"].nccos[0]]
    assert actions == ["talk"]
    assert "&quot;action&quot;: &quot;talk&quot;" in response.content.decode()


@pytest.fixture
def pin_conversation(service, monkeypatch):
    """PIN mode always on one number: Alice (PIN 864209) and Bob (975310)."""
    from proxy.models import Service
    from tests.factories import VirtualNumberFactory

    supply = iter(["864209"] * 8 + ["975310"] * 8)
    monkeypatch.setattr("proxy.pins.pin_draw", lambda: next(supply))
    service.pin_mode = Service.PinMode.ALWAYS
    service.save()
    VirtualNumberFactory(service=service, number="12015550200")
    return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)


def test_a_pin_call_keys_in_the_picked_participants_pin_without_showing_it(staff_client, pin_conversation):
    alice = pin_conversation.participants.get(real_number=ALICE)
    assert "has a PIN" in staff_client.get(URL).content.decode()
    response = staff_client.post(URL, {"participant": alice.pk, "use_pin": "on", "outcome": "answered", "duration": 5})
    result = response.context["result"]
    assert result.ok and result.connected.to_number == BOB
    assert [a["action"] for a in result.nccos[0]] == ["talk", "input"]
    html = response.content.decode()
    assert "864209" not in html and "975310" not in html
    assert response.context["form"].initial.get("pin") is None


def test_typed_keys_are_played_one_per_prompt_and_not_echoed(staff_client, pin_conversation):
    response = staff_client.post(
        URL,
        {
            "caller": "withheld",
            "proxy_number": "12015550200",
            "pin": "000000, 975310",
            "outcome": "answered",
            "duration": 5,
        },
    )
    result = response.context["result"]
    assert result.ok and result.connected.to_number == ALICE
    assert len(result.nccos) == 3  # the prompt, the prompt again, the connect
    assert "975310" not in response.content.decode()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"caller": "withheld", "proxy_number": "12015550200", "use_pin": "on"}, "Pick the participant"),
        ({"caller": "withheld", "proxy_number": "12015550200", "pin": "12ab"}, "0-9, * and #"),
    ],
)
def test_pin_form_errors(staff_client, pin_conversation, data, error):
    response = staff_client.post(URL, {**data, "outcome": "answered", "duration": 5})
    assert error in response.content.decode() and response.context["result"] is None


def test_use_pin_for_a_participant_without_one_is_a_form_error(staff_client, conversation):
    alice = conversation.participants.get(real_number=ALICE)
    response = staff_client.post(URL, {"participant": alice.pk, "use_pin": "on", "outcome": "answered", "duration": 5})
    assert "has no PIN" in response.content.decode()


def test_invalid_numbers_are_form_errors(staff_client):
    response = staff_client.post(URL, {"caller": "12", "proxy_number": "34", "outcome": "answered", "duration": 5})
    assert response.status_code == 200
    assert not SandboxCall.objects.exists()
    assert response.context["form"].errors


def test_failures_can_be_injected_and_the_sandbox_reset(staff_client):
    response = staff_client.post("/sandbox/failures", {"path": "/sms/json", "mode": "throttle", "count": 2})
    assert response.status_code == 302
    assert SandboxFailure.objects.get().remaining == 2
    staff_client.post("/sandbox/reset")
    assert not SandboxFailure.objects.exists()


# --- People's numbers stay masked ------------------------------------------------------------------

# A run of digits long enough to be a phone number, standing alone (not inside a uuid or a token).
NUMBER_LIKE = re.compile(r"(?<![\w.\-])\+?\d{6,15}(?![\w\-])")


def _numbers_in(html: str) -> set[str]:
    return {found.lstrip("+") for found in NUMBER_LIKE.findall(html)}


@pytest.fixture
def labelled(conversation):
    """The conversation with an external id: unnamed, the page shows its uuid's first 8 characters,
    which can happen to be all digits."""
    type(conversation).objects.filter(pk=conversation.pk).update(external_id="order-1")
    return conversation


@pytest.mark.parametrize("outcome", ["answered", "busy"])
def test_no_real_number_is_shown_after_placing_a_call(staff_client, labelled, pool, settings, outcome):
    settings.VONAGE_SIGNATURE_SECRET = "try-it-page-signature-secret-32-bytes"
    alice = labelled.participants.get(real_number=ALICE)
    response = staff_client.post(URL, {"participant": alice.pk, "outcome": outcome, "duration": 12})
    html = response.content.decode()
    assert response.context["result"].connected.to_number == BOB  # Bob was rung...
    assert ALICE not in html  # ...yet neither person's number is on the page,
    assert BOB not in html
    assert mask(BOB) in html  # only masked,
    assert alice.proxy_number_id in html  # while the proxy number dialled stays readable,
    assert _numbers_in(html) <= {n.number for n in pool}  # and no other number slips through.
    for part in ("transcript", "ncco", "timeline"):
        assert f'id="{part}"' in html


def test_a_typed_caller_is_not_echoed_back_after_the_call(staff_client, labelled, pool):
    alice = labelled.participants.get(real_number=ALICE)
    stranger = "12015550199"
    response = staff_client.post(
        URL, {"caller": "+1 201 555 0199", "proxy_number": alice.proxy_number_id, "outcome": "answered", "duration": 5}
    )
    html = response.content.decode()
    assert response.context["result"].legs[0].from_number == stranger
    assert stranger not in html
    assert "201 555 0199" not in html
    assert mask(stranger) in html
    assert _numbers_in(html) <= {n.number for n in pool}


# --- Only while the sandbox is the provider --------------------------------------------------------


@pytest.mark.parametrize(
    "configured",
    [
        {"VONAGE_API_KEY": "key", "VONAGE_API_SECRET": "secret"},
        {"VONAGE_APPLICATION_ID": "app-123", "VONAGE_PRIVATE_KEY": "/etc/vonage/private.key"},
        {"VONAGE_PROVIDER": "vonage"},
    ],
)
def test_the_page_is_404_when_vonage_is_configured(staff_client, conversation, settings, configured):
    for name, value in configured.items():
        setattr(settings, name, value)
    alice = conversation.participants.get(real_number=ALICE)
    assert staff_client.get(URL).status_code == 404
    response = staff_client.post(URL, {"participant": alice.pk, "outcome": "answered", "duration": 5})
    assert response.status_code == 404
    assert not SandboxCall.objects.exists()
    assert not Call.objects.exists()
    assert not CallEvent.objects.exists()
    assert (
        staff_client.post("/sandbox/failures", {"path": "/sms/json", "mode": "throttle", "count": 1}).status_code == 404
    )
    assert not SandboxFailure.objects.exists()
    assert staff_client.post("/sandbox/reset").status_code == 404


def test_the_page_is_404_for_anonymous_visitors_too_when_vonage_is_configured(client, settings):
    settings.VONAGE_API_KEY, settings.VONAGE_API_SECRET = "key", "secret"
    assert client.get(URL).status_code == 404


def test_a_forced_sandbox_keeps_the_page_despite_credentials(staff_client, settings):
    settings.VONAGE_API_KEY, settings.VONAGE_API_SECRET = "key", "secret"
    settings.VONAGE_PROVIDER = "sandbox"
    assert staff_client.get(URL).status_code == 200


def test_the_page_shows_what_the_marketplace_hook_answered(staff_client, conversation, service, settings):
    from tests.hook_server import Reply, hook_server

    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    alice = conversation.participants.get(real_number=ALICE)
    with hook_server() as hook:
        hook.reply = Reply(403)
        service.intercept_url = hook.url
        service.save()
        response = staff_client.post(URL, {"participant": alice.pk, "outcome": "answered", "duration": 12})
    html = response.content.decode()
    assert "The marketplace hook answered: <strong>call.intercept: blocked (HTTP 403" in html
    assert service.not_allowed_text in html
    assert response.context["result"].connected is None
    assert ALICE not in html and len(hook.requests) == 1
