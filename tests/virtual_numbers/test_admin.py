"""The pool's staff console: pool health, buying, importing, moving and releasing numbers."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.urls import reverse

from tests.console import messages_of
from tests.factories import ServiceFactory, VirtualNumberFactory
from tests.virtual_numbers.fake_provider import offer
from virtual_numbers.models import PoolExhaustion, VirtualNumber

pytestmark = pytest.mark.django_db


def test_pool_health_requiresstaff_user(client):
    response = client.get(reverse("pool-health"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_pool_health_shows_figures_and_warning(admin_client, conversation):
    PoolExhaustion.objects.create(service=conversation.service, country="US")
    page = admin_client.get(reverse("pool-health")).content.decode()
    assert 'data-figure="open-conversations">1<' in page
    assert 'data-col="busiest">1<' in page
    assert 'id="pool-warnings"' in page
    assert "<svg" in page and "Calls per day" in page


def test_buy_numbers_from_the_console(admin_client, service, fake):
    url = reverse("admin:numbers_virtualnumber_buy")
    page = admin_client.get(url, {"country": "us", "features": ["VOICE"], "size": 10, "search": 1}).content.decode()
    assert "+12015550300" in page and "+12015550301" in page

    values = [v for v in page.split('name="number" value="')[1:3]]
    chosen = [v.split('"')[0] for v in values]
    response = admin_client.post(url, {"number": chosen, "service": service.pk})

    assert response.status_code == 302
    bought = VirtualNumber.objects.filter(service=service).order_by("number")
    assert [n.number for n in bought] == ["12015550300", "12015550301"]
    assert all(n.linked_app_id for n in bought)
    assert LogEntry.objects.filter(action_flag=ADDITION, content_type__model="virtualnumber").count() == 2


def test_buying_a_number_already_in_the_pool_buys_and_logs_nothing(admin_client, service, fake):
    from virtual_numbers.admin_provisioning import offer_encode

    url = reverse("admin:numbers_virtualnumber_buy")
    # Offered on the page a moment ago; since then someone else put it in the pool.
    chosen = offer_encode(offer("12015550300"))
    VirtualNumberFactory(service=service, number="12015550300")

    response = admin_client.post(url, {"number": [chosen], "service": service.pk}, follow=True)

    shown = messages_of(response)
    assert any("already in the pool" in m for m in shown)
    assert not any(m.startswith("Bought") for m in shown)
    assert not LogEntry.objects.filter(action_flag=ADDITION, content_type__model="virtualnumber").exists()
    assert "12015550300" not in fake.owned


def test_import_owned_numbers(admin_client, service, fake):
    fake.buy_number(country="US", number="12015550300")
    admin_client.post(reverse("admin:numbers_virtualnumber_import_owned"), {"service": service.pk})
    assert VirtualNumber.objects.get(number="12015550300").service == service


def test_release_refused_while_in_use_with_a_clear_message(admin_client, conversation, fake):
    number = VirtualNumber.objects.get(number="12015550200")
    idle = VirtualNumberFactory(service=conversation.service, number="12015550209")
    changelist = reverse("admin:numbers_virtualnumber_changelist")
    chosen = {"action": "release", "_selected_action": [number.pk, idle.pk]}
    confirm = admin_client.post(changelist, chosen).content.decode()
    assert "Release numbers" in confirm and "+12015550209" in confirm
    assert VirtualNumber.objects.get(pk=idle.pk).state == "active"  # nothing happens before confirming

    response = admin_client.post(changelist, {**chosen, "apply": "1"}, follow=True)
    page = response.content.decode()
    assert "still used by 1 open conversation" in page
    assert VirtualNumber.objects.get(pk=number.pk).state == "active"
    assert VirtualNumber.objects.get(pk=idle.pk).state == "released"
    assert LogEntry.objects.filter(object_id=str(idle.pk), change_message="Released").exists()


def test_move_numbers_between_pools(admin_client, service):
    other = ServiceFactory(name="Other")
    number = VirtualNumberFactory(service=service)
    changelist = reverse("admin:numbers_virtualnumber_changelist")
    form = admin_client.post(changelist, {"action": "move_to_pool", "_selected_action": [number.pk]})
    assert "Move numbers to another pool" in form.content.decode()
    admin_client.post(
        changelist, {"action": "move_to_pool", "_selected_action": [number.pk], "apply": "1", "service": other.pk}
    )
    assert VirtualNumber.objects.get(pk=number.pk).service == other


def test_dashboard_filters_by_service(admin_client, conversation):
    other = ServiceFactory(name="Zeta Deliveries")
    VirtualNumberFactory(service=other, number="12015550290")
    everything = admin_client.get(reverse("pool-health")).content.decode()
    assert "Zeta Deliveries</td>" in everything and "Acme Rides</td>" in everything
    only = admin_client.get(reverse("pool-health"), {"service": other.pk, "days": 30}).content.decode()
    assert "Zeta Deliveries</td>" in only and "Acme Rides</td>" not in only
    assert "last 30 days" in only


def test_number_page_offers_the_changes_its_state_allows(admin_client, fake):
    number = VirtualNumberFactory(number="12015550230")
    page = admin_client.get(reverse("admin:numbers_virtualnumber_change", args=[number.pk])).content.decode()
    drain = reverse("admin:numbers_virtualnumber_drain_one", args=[number.pk])
    activate = reverse("admin:numbers_virtualnumber_activate_one", args=[number.pk])
    assert drain in page and activate not in page

    assert "Drain this number" in admin_client.get(drain).content.decode()
    admin_client.post(drain, {"apply": "1"})
    number.refresh_from_db()
    assert number.state == "draining"
    page = admin_client.get(reverse("admin:numbers_virtualnumber_change", args=[number.pk])).content.decode()
    assert activate in page and drain not in page

    release = reverse("admin:numbers_virtualnumber_release_one", args=[number.pk])
    assert "Release numbers" in admin_client.get(release).content.decode()
    admin_client.post(release, {"apply": "1"})
    number.refresh_from_db()
    assert number.state == "released"
    assert LogEntry.objects.filter(object_id=str(number.pk)).count() == 2


def test_move_from_the_number_page(admin_client, service):
    other = ServiceFactory(name="Other")
    number = VirtualNumberFactory(service=service)
    move = reverse("admin:numbers_virtualnumber_move_one", args=[number.pk])
    assert "Move to pool" in admin_client.get(move).content.decode()
    response = admin_client.post(move, {"apply": "1", "service": other.pk})
    assert response.status_code == 302
    assert VirtualNumber.objects.get(pk=number.pk).service == other


def test_number_page_is_read_only_and_shows_its_conversations(admin_client, conversation):
    number = VirtualNumber.objects.get(number="12015550200")
    page = admin_client.get(reverse("admin:numbers_virtualnumber_change", args=[number.pk])).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert "?q=%2B12015550200&amp;status=open" in page  # link to the conversations using it


def test_a_number_vonage_did_not_cancel_stays_in_sight_until_a_release_retry_succeeds(admin_client, service, fake):
    number = VirtualNumberFactory(service=service, number="12015550240")
    changelist = reverse("admin:numbers_virtualnumber_changelist")
    fake.fail_cancel = True

    response = admin_client.post(changelist, {"action": "release", "_selected_action": [number.pk], "apply": "1"})

    assert messages_of(response) == [
        "+12015550240 is released in our pool but still rented at Vonage (Vonage did not cancel it: "
        "Cancel refused (permanent)). Release it again to retry the cancel."
    ]
    assert LogEntry.objects.get(object_id=str(number.pk)).change_message == (
        "Released in the pool; Vonage did not cancel the rental"
    )
    listed = admin_client.get(changelist).content.decode()
    assert "+1 201-555-0240" in listed and "Released, still rented at Vonage" in listed
    page = admin_client.get(reverse("admin:numbers_virtualnumber_change", args=[number.pk])).content.decode()
    release = reverse("admin:numbers_virtualnumber_release_one", args=[number.pk])
    assert release in page

    fake.fail_cancel = False
    admin_client.post(release, {"apply": "1"})
    number.refresh_from_db()
    assert (number.state, number.released_at is not None) == ("released", True)
    assert [name for name, _ in fake.calls] == ["cancel", "cancel"]
    assert "+1 201-555-0240" not in admin_client.get(changelist).content.decode()
    page = admin_client.get(reverse("admin:numbers_virtualnumber_change", args=[number.pk])).content.decode()
    assert release not in page


def test_pool_records_are_read_only(admin_client, service):
    exhaustion = PoolExhaustion.objects.create(service=service, country="US")
    assert admin_client.get(reverse("admin:numbers_poolexhaustion_add")).status_code == 403
    page = admin_client.get(reverse("admin:numbers_poolexhaustion_change", args=[exhaustion.pk])).content.decode()
    assert 'name="_save"' not in page
    response = admin_client.post(reverse("admin:numbers_poolexhaustion_delete", args=[exhaustion.pk]), {"post": "yes"})
    assert response.status_code == 403 and PoolExhaustion.objects.filter(pk=exhaustion.pk).exists()


@pytest.mark.parametrize("chosen_service", ["abc", "1.5", "99999", "' OR 1=1 --", "\x00"])
def test_a_bad_pool_in_the_buy_form_is_a_message_not_a_500(admin_client, service, fake, chosen_service):
    from virtual_numbers.admin_provisioning import offer_encode

    url = reverse("admin:numbers_virtualnumber_buy")
    response = admin_client.post(url, {"number": [offer_encode(offer("12015550300"))], "service": chosen_service})
    assert response.status_code == 302
    assert not VirtualNumber.objects.exists()
    assert "12015550300" not in fake.owned


@pytest.mark.parametrize("chosen_service", ["abc", "99999"])
def test_a_bad_pool_in_the_import_form_is_a_message_not_a_500(admin_client, service, fake, chosen_service):
    fake.buy_number(country="US", number="12015550300")
    response = admin_client.post(reverse("admin:numbers_virtualnumber_import_owned"), {"service": chosen_service})
    assert response.status_code == 302
    assert not VirtualNumber.objects.exists()
