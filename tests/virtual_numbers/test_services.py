from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from telephony.provider import OwnedNumber, ProviderError
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory, VirtualNumberFactory
from tests.virtual_numbers.fake_provider import FakeProvider, offer
from virtual_numbers import services
from virtual_numbers.models import VirtualNumber

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider(for_sale=[offer("12015550300"), offer("12015550301", features=("VOICE",))])


def _busy(number: VirtualNumber, *, expires_in: timedelta = timedelta(hours=1)) -> None:
    conversation = ConversationFactory(service=number.service, expires_at=timezone.now() + expires_in)
    ParticipantFactory(conversation=conversation, proxy_number=number, real_number="12015550101")


def test_buy_stores_links_and_pools_the_number(provider, settings):
    settings.VONAGE_APPLICATION_ID = "app-123"
    service = ServiceFactory()

    row = services.number_buy(
        number="12015550301",
        country="us",
        service=service,
        features=("VOICE",),
        monthly_cost=Decimal("0.9"),
        provider=provider,
    )

    row.refresh_from_db()
    assert (row.service, row.country, row.state, row.voice, row.sms) == (service, "US", "active", True, False)
    assert row.linked_app_id == "app-123"
    assert row.monthly_cost == Decimal("0.9")
    assert [name for name, _ in provider.calls] == ["buy", "link"]
    assert provider.calls[1][1]["app_id"] == "app-123"


def test_buy_refused_by_vonage_stores_nothing(provider):
    with pytest.raises(ProviderError):
        services.number_buy(number="12015550999", country="US", service=None, provider=provider)
    assert not VirtualNumber.objects.exists()


def test_buy_keeps_the_number_when_linking_fails(provider):
    provider.fail_link = True
    with pytest.raises(services.NumberError, match="could not be linked"):
        services.number_buy(number="12015550300", country="US", service=None, provider=provider)
    row = VirtualNumber.objects.get(number="12015550300")
    assert row.linked_app_id == ""
    provider.fail_link = False
    services.number_link(number=row, provider=provider)
    assert row.linked_app_id


def test_buy_refuses_a_number_already_in_the_pool(provider):
    VirtualNumberFactory(number="12015550300")
    with pytest.raises(services.NumberError, match="already in the pool"):
        services.number_buy(number="12015550300", country="US", service=None, provider=provider)
    assert provider.calls == []


def test_import_adds_unknown_numbers_and_revives_released_ones(provider):
    service = ServiceFactory()
    kept = VirtualNumberFactory(number="12015550400", service=None)
    released = VirtualNumberFactory(number="12015550401", state=VirtualNumber.State.RELEASED, service=None)
    provider.owned = {
        n: OwnedNumber(n, "US", "mobile-lvn", ("VOICE", "SMS"), "app")
        for n in ("12015550400", "12015550401", "12015550402")
    }

    imported = services.number_import_owned(service=service, provider=provider)

    assert sorted(row.number for row in imported) == ["12015550401", "12015550402"]
    released.refresh_from_db()
    kept.refresh_from_db()
    assert (released.state, released.service, released.released_at) == ("active", service, None)
    assert kept.service is None  # numbers already tracked keep their pool
    assert VirtualNumber.objects.get(number="12015550402").linked_app_id == "app"


def test_move_an_idle_number():
    number = VirtualNumberFactory()
    other = ServiceFactory()
    services.number_move(number=number, service=other)
    number.refresh_from_db()
    assert number.service == other


def test_move_is_refused_while_in_use_but_not_for_expired_conversations():
    number = VirtualNumberFactory()
    _busy(number)
    with pytest.raises(services.NumberInUse, match="1 open conversation; drain it"):
        services.number_move(number=number, service=ServiceFactory())

    stale = VirtualNumberFactory()
    _busy(stale, expires_in=timedelta(seconds=-1))
    services.number_move(number=stale, service=None)
    stale.refresh_from_db()
    assert stale.service is None


def test_drain_and_reactivate():
    number = VirtualNumberFactory()
    services.number_drain(number=number)
    assert VirtualNumber.objects.get(pk=number.pk).state == "draining"
    services.number_activate(number=number)
    assert VirtualNumber.objects.get(pk=number.pk).state == "active"


def test_release_cancels_an_unused_number(provider):
    number = VirtualNumberFactory(state=VirtualNumber.State.DRAINING)
    services.number_release(number=number, provider=provider)
    number.refresh_from_db()
    assert number.state == "released" and number.released_at is not None
    assert provider.calls == [("cancel", {"country": "US", "number": number.number})]
    with pytest.raises(services.NumberError, match="released"):
        services.number_drain(number=number)


def test_release_of_an_active_number_drains_it_on_the_way(provider):
    number = VirtualNumberFactory()
    returned = services.number_release(number=number, provider=provider)
    assert (returned.state, returned.released_at is not None) == ("released", True)
    assert [name for name, _ in provider.calls] == ["cancel"]


@pytest.mark.django_db(transaction=True)
def test_release_cancels_at_vonage_after_committing_and_outside_any_transaction():
    seen: list[tuple[bool, str]] = []

    class Watching(FakeProvider):
        def cancel_number(self, *, country: str, number: str) -> None:
            seen.append((connection.in_atomic_block, VirtualNumber.objects.get(number=number).state))
            super().cancel_number(country=country, number=number)

    number = VirtualNumberFactory()
    services.number_release(number=number, provider=Watching())
    assert seen == [(False, "released")]


@pytest.mark.parametrize("before", [VirtualNumber.State.ACTIVE, VirtualNumber.State.DRAINING])
def test_release_is_refused_while_in_use_and_leaves_the_state_as_it_was(provider, before):
    number = VirtualNumberFactory(state=before)
    _busy(number)
    with pytest.raises(services.NumberInUse, match="still used by 1 open conversation"):
        services.number_release(number=number, provider=provider)
    number.refresh_from_db()
    assert number.state == before
    assert provider.calls == []


def test_release_is_not_refused_for_expired_or_cooling_conversations(provider):
    number = VirtualNumberFactory()
    _busy(number, expires_in=timedelta(seconds=-1))
    conversation = ConversationFactory(service=number.service, status="closed")
    ParticipantFactory(
        conversation=conversation,
        proxy_number=number,
        active=False,
        cooldown_until=timezone.now() + timedelta(hours=1),
    )
    assert services.number_release(number=number, provider=provider).state == "released"


def test_vonage_refusing_the_cancel_leaves_a_clear_state_and_release_retries_it(provider, caplog):
    provider.fail_cancel = True
    number = VirtualNumberFactory()

    with pytest.raises(services.NumberStillRented) as refused:
        services.number_release(number=number, provider=provider)

    message = str(refused.value)
    assert f"+{number.number} is released in our pool but still rented at Vonage" in message
    assert "Cancel refused" in message and "Release it again to retry the cancel" in message
    assert "still rented at Vonage" in caplog.text
    number.refresh_from_db()
    assert (number.state, number.released_at) == ("released", None)  # no new conversation takes it

    provider.fail_cancel = False
    services.number_release(number=number, provider=provider)
    number.refresh_from_db()
    assert number.released_at is not None
    assert [name for name, _ in provider.calls] == ["cancel", "cancel"]

    services.number_release(number=number, provider=provider)  # done: nothing to retry
    assert len(provider.calls) == 2


def test_retry_after_a_cancel_that_went_through_unconfirmed(provider):
    """A timeout may hide a cancel Vonage did make; the retry then finds the number gone."""
    number = VirtualNumberFactory(state=VirtualNumber.State.RELEASED, released_at=None)
    provider.fail_cancel = True  # Vonage refuses to cancel a number the account does not rent

    services.number_release(number=number, provider=provider)

    number.refresh_from_db()
    assert number.released_at is not None


def test_retry_keeps_saying_still_rented_while_the_account_rents_it(provider):
    number = VirtualNumberFactory(state=VirtualNumber.State.RELEASED, released_at=None)
    provider.owned[number.number] = OwnedNumber(number.number, "US", "mobile-lvn", ("VOICE",))
    provider.fail_cancel = True
    with pytest.raises(services.NumberStillRented):
        services.number_release(number=number, provider=provider)
    number.refresh_from_db()
    assert number.released_at is None


def test_move_of_a_released_number_is_refused():
    number = VirtualNumberFactory(state=VirtualNumber.State.RELEASED)
    with pytest.raises(services.NumberError, match="no longer rented"):
        services.number_move(number=number, service=ServiceFactory())


def test_search_offers_leaves_out_numbers_already_in_the_pool(provider):
    VirtualNumberFactory(number="12015550300")
    VirtualNumberFactory(number="12015550301", state=VirtualNumber.State.RELEASED)
    offers = services.number_search_offers(country="us", provider=provider)
    assert [o.number for o in offers] == ["12015550301"]  # a released number may be bought back
    assert provider.calls == [("search", {"country": "US", "pattern": ""})]


def test_list_owned_splits_new_numbers_from_pooled_ones(provider):
    VirtualNumberFactory(number="12015550400")
    VirtualNumberFactory(number="12015550401", state=VirtualNumber.State.RELEASED)
    provider.owned = {n: OwnedNumber(n, "US", "mobile-lvn", ("VOICE",)) for n in ("12015550400", "12015550401")}
    owned = services.number_list_owned(provider=provider)
    assert ([n.number for n in owned.new], owned.known_count) == (["12015550401"], 1)


def test_provisioning_against_the_sandbox(settings):
    """The same services against the sandbox provider, which speaks Vonage's shapes."""
    from telephony.models import SandboxNumber
    from telephony.registry import get_provider

    settings.VONAGE_PROVIDER = "sandbox"
    provider = get_provider()
    service = ServiceFactory()
    offers = provider.search_numbers(country="US", features=("VOICE",), size=3)
    assert len(offers) == 3

    bought = services.number_buy(
        number=offers[0].number,
        country="US",
        service=service,
        number_type=offers[0].number_type,
        features=offers[0].features,
        monthly_cost=offers[0].monthly_cost,
    )
    assert SandboxNumber.objects.get(msisdn=bought.number).app_id  # linked at "Vonage"
    assert bought.linked_app_id

    provider.buy_number(country="US", number=offers[1].number)  # rented outside the console
    imported = services.number_import_owned(service=service)
    assert [row.number for row in imported] == [offers[1].number]

    services.number_release(number=bought)
    assert not SandboxNumber.objects.filter(msisdn=bought.number).exists()
    assert offers[0].number not in [n.number for n in provider.list_owned_numbers()]


def test_import_leaves_numbers_of_another_application_out_of_allocation(provider, settings):
    """A number whose calls Vonage sends to another application would give participants a dead line."""
    settings.VONAGE_APPLICATION_ID = "ours"
    service = ServiceFactory()
    provider.owned = {
        "12015550500": OwnedNumber("12015550500", "US", "mobile-lvn", ("VOICE", "SMS"), "ours"),
        "12015550501": OwnedNumber("12015550501", "US", "mobile-lvn", ("VOICE", "SMS"), "theirs"),
        "12015550502": OwnedNumber("12015550502", "US", "mobile-lvn", ("VOICE", "SMS"), ""),
    }

    services.number_import_owned(service=service, provider=provider)

    states = dict(VirtualNumber.objects.values_list("number", "state"))
    assert states == {"12015550500": "active", "12015550501": "draining", "12015550502": "draining"}
    assert VirtualNumber.objects.get(number="12015550501").linked_app_id == "theirs"
