"""The console for PINs: attempts and lockouts visible to staff, PINs themselves never shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from proxy.models import Call, PinCall, Service
from proxy.services import conversation_create
from tests.conftest import ALICE, BOB
from tests.console import staff_user
from tests.factories import VirtualNumberFactory

pytestmark = pytest.mark.django_db

STRANGER = "12015550155"


@pytest.fixture
def pin_conversation(service, monkeypatch):
    """Alice (PIN 864209) and Bob (975310) on one number; PINs that appear nowhere else on a page."""
    supply = iter(["864209"] * 8 + ["975310"] * 8)
    monkeypatch.setattr("proxy.pins.pin_draw", lambda: next(supply))
    service.pin_mode = Service.PinMode.FALLBACK
    service.save()
    VirtualNumberFactory(service=service, number="12015550200")
    return conversation_create(service=service, participants=[{"number": ALICE, "name": "Alice"}, {"number": BOB}])


def test_pin_calls_show_tries_and_lockouts_with_callers_masked(admin_client, service):
    now = timezone.now()
    PinCall.objects.create(
        call_uuid="call-locked",
        service=service,
        proxy_number="12015550200",
        caller=STRANGER,
        tries=3,
        wrong_pins=3,
        outcome="failed",
        failed_at=now,
        locked_until=now + timedelta(hours=1),
    )
    PinCall.objects.create(call_uuid="call-withheld", service=service, proxy_number="12015550200", tries=1)

    page = admin_client.get(reverse("admin:proxy_pincall_changelist")).content.decode()
    assert STRANGER not in page and "1201****155" in page
    assert "withheld" in page and "+12015550200" in page
    assert "Failed" in page and "Pending" in page
    assert f"{now + timedelta(hours=1):%Y-%m-%d %H:%M} UTC" in page

    locked = admin_client.get(reverse("admin:proxy_pincall_changelist"), {"locked": "now"}).content.decode()
    assert "1201****155" in locked and "withheld" not in locked.split("<tbody")[1]

    found = admin_client.get(reverse("admin:proxy_pincall_changelist"), {"q": "+1 201 555 0155"}).content.decode()
    assert "1201****155" in found and STRANGER not in found

    detail = admin_client.get(
        reverse("admin:proxy_pincall_change", args=[PinCall.objects.get(call_uuid="call-locked").pk])
    ).content.decode()
    assert STRANGER not in detail and "1201****155" in detail


def test_operators_can_read_pin_calls(client, service):
    PinCall.objects.create(call_uuid="call-1", service=service, proxy_number="12015550200", caller=STRANGER)
    client.force_login(staff_user("Operators"))
    assert client.get(reverse("admin:proxy_pincall_changelist")).status_code == 200


def test_a_conversation_page_says_a_pin_is_set_and_never_which(admin_client, pin_conversation):
    page = admin_client.get(reverse("admin:proxy_conversation_change", args=[pin_conversation.pk])).content.decode()
    assert "PIN" in page and ">set<" in page
    assert sorted(p.pin for p in pin_conversation.participants.all()) == ["864209", "975310"]
    assert "864209" not in page and "975310" not in page


def test_an_sms_naming_a_pin_is_shown_with_the_pin_hidden(admin_client, pin_conversation):
    alice = pin_conversation.participants.get(real_number=ALICE)
    notification = alice.notifications.get()
    assert alice.pin in notification.text
    page = admin_client.get(reverse("admin:proxy_notification_change", args=[notification.pk])).content.decode()
    assert alice.pin not in page and "••••••" in page


def test_calls_say_how_they_were_routed(admin_client, pin_conversation):
    Call.objects.create(uuid="by-pin", conversation=pin_conversation, service=pin_conversation.service, routed_by="pin")
    Call.objects.create(
        uuid="by-pair", conversation=pin_conversation, service=pin_conversation.service, routed_by="pair"
    )
    page = admin_client.get(reverse("admin:proxy_call_changelist"), {"routed_by": "pin"}).content.decode()
    assert "by-pin"[:8] in page and "by-pair" not in page
    assert "PIN" in page


def test_the_service_page_sets_the_pin_mode(admin_client, service):
    page = admin_client.get(reverse("admin:proxy_service_change", args=[service.pk])).content.decode()
    assert 'name="pin_mode"' in page and 'name="pin_prompt_text"' in page
    listing = admin_client.get(reverse("admin:proxy_service_changelist"), {"pin_mode__exact": "off"}).content.decode()
    assert service.name in listing


def test_pool_health_shows_a_pin_pool_as_healthy(admin_client, service):
    service.pin_mode = Service.PinMode.ALWAYS
    service.save()
    VirtualNumberFactory(service=service, number="12015550200")
    for buyer in ("12015550102", "12015550103", "12015550104"):
        conversation_create(service=service, participants=[{"number": ALICE}, {"number": buyer}], notify=False)
    page = admin_client.get(reverse("pool-health")).content.decode()
    assert 'data-col="pin-only">6<' in page and "PIN always" in page
    assert 'data-col="headroom"><span class="badge ok">0<' in page
    assert 'id="pool-warnings"' not in page
