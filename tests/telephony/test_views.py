"""The try-it page: staff only; a sandbox call shows its NCCO and event timeline."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from proxy.services import conversation_create
from telephony.models import SandboxCall, SandboxFailure
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db

URL = "/sandbox/"


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("staff", password="pw-12345-long", is_staff=True)
    client.force_login(user)
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
