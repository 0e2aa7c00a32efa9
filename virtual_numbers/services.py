"""Provisioning the pool: buy, import, move, drain and release numbers.

Every change that touches Vonage goes through ``telephony.provider``; the rows here
only change once Vonage said yes, so the pool never lists a number we do not rent.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from proxy.models import Participant, Service
from telephony.provider import Provider, ProviderError, get_provider
from virtual_numbers.models import VirtualNumber


class NumberError(Exception):
    """A pool change was refused; the message is fit to show staff as it is."""


class NumberInUse(NumberError):
    pass


_TYPES = {choice.value for choice in VirtualNumber.Type}


def _number_type(raw: str) -> str:
    return raw if raw in _TYPES else VirtualNumber.Type.MOBILE


def _capabilities(features: tuple[str, ...] | list[str]) -> dict[str, bool]:
    upper = {feature.upper() for feature in features}
    return {"voice": "VOICE" in upper, "sms": "SMS" in upper}


def number_in_use_count(*, number: VirtualNumber, now: datetime | None = None) -> int:
    """Open, unexpired conversations that route calls through ``number``."""
    now = now or timezone.now()
    return (
        Participant.objects.filter(
            proxy_number=number, active=True, conversation__status="open", conversation__expires_at__gt=now
        )
        .values("conversation_id")
        .distinct()
        .count()
    )


def number_buy(
    *,
    number: str,
    country: str,
    service: Service | None,
    number_type: str = VirtualNumber.Type.MOBILE,
    features: tuple[str, ...] = ("VOICE", "SMS"),
    monthly_cost: Decimal | None = None,
    provider: Provider | None = None,
) -> VirtualNumber:
    """Rent ``number`` from Vonage, link it to our application and put it in ``service``'s pool.

    Raises ProviderError when Vonage refuses the purchase (nothing is stored then).
    When the purchase succeeds but linking fails, the number is stored unlinked
    (we pay for it either way) and NumberError says so; ``number_link`` retries.
    """
    provider = provider or get_provider()
    country = country.upper()
    if VirtualNumber.objects.filter(number=number).exclude(state=VirtualNumber.State.RELEASED).exists():
        raise NumberError(f"+{number} is already in the pool.")
    provider.buy_number(country=country, number=number)
    values = {
        "country": country,
        "number_type": _number_type(number_type),
        "service": service,
        "state": VirtualNumber.State.ACTIVE,
        "monthly_cost": monthly_cost,
        "linked_app_id": "",
        "released_at": None,
        **_capabilities(features),
    }
    row, _ = VirtualNumber.objects.update_or_create(number=number, defaults=values)
    number_link(number=row, provider=provider)
    return row


def number_link(*, number: VirtualNumber, provider: Provider | None = None) -> VirtualNumber:
    """Point the number's inbound calls at our Vonage application."""
    provider = provider or get_provider()
    app_id = settings.VONAGE_APPLICATION_ID
    try:
        provider.link_number(country=number.country, number=number.number, app_id=app_id)
    except ProviderError as exc:
        raise NumberError(f"+{number.number} was bought but could not be linked to the application: {exc}") from exc
    number.linked_app_id = app_id or provider.name
    number.save(update_fields=["linked_app_id", "updated_at"])
    return number


def number_import_owned(*, service: Service | None, provider: Provider | None = None) -> list[VirtualNumber]:
    """Add every number the Vonage account already rents that the pool does not know yet.

    Numbers we already track keep their pool and state; a number released here but
    still (or again) rented by the account comes back as active.
    """
    provider = provider or get_provider()
    owned = provider.list_owned_numbers()
    known = {row.number: row for row in VirtualNumber.objects.filter(number__in=[item.number for item in owned])}
    imported: list[VirtualNumber] = []
    with transaction.atomic():
        for item in owned:
            row = known.get(item.number)
            if row is not None and row.state != VirtualNumber.State.RELEASED:
                continue
            values = {
                "country": item.country.upper(),
                "number_type": _number_type(item.number_type),
                "service": service,
                "state": VirtualNumber.State.ACTIVE,
                "linked_app_id": item.app_id,
                "released_at": None,
                **_capabilities(item.features),
            }
            row, _ = VirtualNumber.objects.update_or_create(number=item.number, defaults=values)
            imported.append(row)
    return imported


def number_move(*, number: VirtualNumber, service: Service | None, now: datetime | None = None) -> VirtualNumber:
    """Move a number to another pool (or to none). Refused while conversations use it.

    Open conversations keep routing through their proxy number, so moving a busy
    number would leave it serving two tenants at once.
    """
    with transaction.atomic():
        locked = VirtualNumber.objects.select_for_update().get(pk=number.pk)
        if locked.state == VirtualNumber.State.RELEASED:
            raise NumberError(f"+{locked.number} was released; it is no longer rented.")
        if locked.service_id == (service.pk if service else None):
            return locked
        in_use = number_in_use_count(number=locked, now=now)
        if in_use:
            raise NumberInUse(
                f"+{locked.number} is used by {in_use} open conversation{'s' if in_use != 1 else ''}; "
                "drain it and move it once they end."
            )
        locked.service = service
        locked.save(update_fields=["service", "updated_at"])
    return locked


def number_drain(*, number: VirtualNumber) -> VirtualNumber:
    """Stop handing the number to new conversations; open ones keep it until they end."""
    if number.state == VirtualNumber.State.RELEASED:
        raise NumberError(f"+{number.number} was released; it is no longer rented.")
    number.state = VirtualNumber.State.DRAINING
    number.save(update_fields=["state", "updated_at"])
    return number


def number_activate(*, number: VirtualNumber) -> VirtualNumber:
    """Undo a drain: the number takes new conversations again."""
    if number.state == VirtualNumber.State.RELEASED:
        raise NumberError(f"+{number.number} was released; buy it again to use it.")
    number.state = VirtualNumber.State.ACTIVE
    number.save(update_fields=["state", "updated_at"])
    return number


def number_release(
    *, number: VirtualNumber, provider: Provider | None = None, now: datetime | None = None
) -> VirtualNumber:
    """Stop renting a number. Refused while an open conversation uses it.

    The row stays (past participants point at it) in state ``released``.
    """
    provider = provider or get_provider()
    now = now or timezone.now()
    with transaction.atomic():
        locked = VirtualNumber.objects.select_for_update().get(pk=number.pk)
        if locked.state == VirtualNumber.State.RELEASED:
            return locked
        in_use = number_in_use_count(number=locked, now=now)
        if in_use:
            raise NumberInUse(
                f"+{locked.number} is still used by {in_use} open conversation{'s' if in_use != 1 else ''}; "
                "drain it and release it once they end."
            )
        try:
            provider.cancel_number(country=locked.country, number=locked.number)
        except ProviderError as exc:
            raise NumberError(f"Vonage refused to cancel +{locked.number}: {exc}") from exc
        locked.state = VirtualNumber.State.RELEASED
        locked.released_at = now
        locked.save(update_fields=["state", "released_at", "updated_at"])
    return locked
