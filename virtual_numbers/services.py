"""Provisioning the pool: buy, import, move, drain and release numbers.

Every change that touches Vonage goes through ``telephony.provider``; the rows here
only change once Vonage said yes, so the pool never lists a number we do not rent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from proxy.models import Participant, Service
from proxy.phone import mask
from telephony.provider import AvailableNumber, OwnedNumber, Provider, ProviderError, VoiceWebhookUrls
from telephony.registry import get_provider
from virtual_numbers.models import VirtualNumber

logger = logging.getLogger(__name__)


class NumberError(Exception):
    """A pool change was refused; the message is fit to show staff as it is."""


class NumberInUse(NumberError):
    pass


class NumberStillRented(NumberError):
    """Released in the pool, but Vonage did not cancel the rental; releasing again retries."""


class NumberNotLinked(NumberError):
    """Rented and stored, but not pointed at our application; ``number_link`` retries."""

    def __init__(self, message: str, *, number: VirtualNumber) -> None:
        super().__init__(message)
        self.number = number


_TYPES = {choice.value for choice in VirtualNumber.Type}


def _number_type(raw: str) -> str:
    return raw if raw in _TYPES else VirtualNumber.Type.MOBILE


def _capabilities(features: tuple[str, ...] | list[str]) -> dict[str, bool]:
    upper = {feature.upper() for feature in features}
    return {"voice": "VOICE" in upper, "sms": "SMS" in upper}


# Every statement that locks several pool numbers takes them in this order (allocation's
# key-share lock does too), so two of them never wait on each other in a circle.
LOCK_ORDER = ("country", "number")


@dataclass(frozen=True)
class AddResult:
    added: int
    kept: int


def numbers_add(
    *, service: Service, numbers: dict[str, str], number_type: str = VirtualNumber.Type.MOBILE, sms: bool = True
) -> AddResult:
    """Put numbers the account already rents (E.164 digits -> country) in ``service``'s pool.

    Numbers already in that pool are left as they are (a released one comes back);
    a number in another service's pool refuses the whole call (NumberError), adding nothing.
    """
    added = kept = 0
    with transaction.atomic():
        existing = {
            n.number: n
            for n in VirtualNumber.objects.select_for_update().filter(number__in=numbers).order_by(*LOCK_ORDER)
        }
        foreign = [n for n in existing.values() if n.service_id not in (None, service.pk)]
        if foreign:
            shown = ", ".join(f"+{mask(n.number)}" for n in foreign)
            raise NumberError(f"Nothing added: {shown} already in another service's pool.")
        for digits, country in numbers.items():
            number = existing.get(digits)
            if number is not None and number.service_id == service.pk and number.state != VirtualNumber.State.RELEASED:
                kept += 1
                continue
            if number is None:
                number = VirtualNumber(number=digits)
            number.service = service
            number.country = country
            number.number_type = number_type
            number.voice = True
            number.sms = sms
            number.state = VirtualNumber.State.ACTIVE
            number.released_at = None
            number.save()
            added += 1
    return AddResult(added=added, kept=kept)


def number_in_use_count(*, number: VirtualNumber, now: datetime | None = None) -> int:
    """Open, unexpired conversations that route calls through ``number``."""
    now = now or timezone.now()
    return Participant.objects.live(now).filter(proxy_number=number).values("conversation_id").distinct().count()


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
    (we pay for it either way) and NumberNotLinked says so; ``number_link`` retries.
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


def number_buy_offer(
    *, offer: AvailableNumber, service: Service | None, provider: Provider | None = None
) -> VirtualNumber:
    """``number_buy`` for a number as a search offered it (type, features and cost included)."""
    return number_buy(
        number=offer.number,
        country=offer.country,
        service=service,
        number_type=offer.number_type,
        features=offer.features,
        monthly_cost=offer.monthly_cost,
        provider=provider,
    )


def number_link(*, number: VirtualNumber, provider: Provider | None = None) -> VirtualNumber:
    """Point the number's inbound calls at our Vonage application."""
    provider = provider or get_provider()
    app_id = settings.VONAGE_APPLICATION_ID
    try:
        provider.link_number(country=number.country, number=number.number, app_id=app_id)
    except ProviderError as exc:
        raise NumberNotLinked(
            f"+{number.number} was bought but could not be linked to the application: {exc}", number=number
        ) from exc
    number.linked_app_id = app_id or provider.name
    number.save(update_fields=["linked_app_id", "updated_at"])
    return number


def number_import_owned(*, service: Service | None, provider: Provider | None = None) -> list[VirtualNumber]:
    """Add every number the Vonage account already rents that the pool does not know yet.

    Numbers we already track keep their pool and state; a number released here but
    still (or again) rented by the account comes back as active. With
    VONAGE_APPLICATION_ID set, a number linked to another application (or to none) comes
    in draining: Vonage would not send its calls here, so no conversation may get it
    until staff link it and reactivate it.
    """
    ours = settings.VONAGE_APPLICATION_ID
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
                "state": VirtualNumber.State.DRAINING if ours and item.app_id != ours else VirtualNumber.State.ACTIVE,
                "linked_app_id": item.app_id,
                "released_at": None,
                **_capabilities(item.features),
            }
            row, _ = VirtualNumber.objects.update_or_create(number=item.number, defaults=values)
            imported.append(row)
    return imported


def number_search_offers(
    *,
    country: str,
    number_type: str = "",
    features: tuple[str, ...] = ("VOICE",),
    pattern: str = "",
    size: int = 10,
    provider: Provider | None = None,
) -> list[AvailableNumber]:
    """Numbers Vonage has for sale, less those already in the pool. Raises ProviderError."""
    provider = provider or get_provider()
    found = provider.search_numbers(
        country=country.upper(), number_type=number_type, features=features, pattern=pattern, size=size
    )
    pooled = set(
        VirtualNumber.objects.filter(number__in=[item.number for item in found])
        .exclude(state=VirtualNumber.State.RELEASED)
        .values_list("number", flat=True)
    )
    return [item for item in found if item.number not in pooled]


@dataclass(frozen=True)
class OwnedNumbers:
    new: list[OwnedNumber]  # rented by the account, not in the pool: what an import adds
    known_count: int


def number_list_owned(*, provider: Provider | None = None) -> OwnedNumbers:
    """What ``number_import_owned`` would add, for staff to look at first. Raises ProviderError."""
    provider = provider or get_provider()
    owned = provider.list_owned_numbers()
    pooled = set(
        VirtualNumber.objects.filter(number__in=[item.number for item in owned])
        .exclude(state=VirtualNumber.State.RELEASED)
        .values_list("number", flat=True)
    )
    return OwnedNumbers(
        new=[item for item in owned if item.number not in pooled],
        known_count=sum(1 for item in owned if item.number in pooled),
    )


def number_move(*, number: VirtualNumber, service: Service | None, now: datetime | None = None) -> VirtualNumber:
    """Move a number to another pool (or to none). Refused while conversations use it.

    Open conversations keep routing through their proxy number, so moving a busy
    number would leave it serving two tenants at once. The row is locked before usage
    is counted: see ``_lock_and_count`` for why that order matters.
    """
    with transaction.atomic():
        locked, in_use = _lock_and_count(number=number, now=now)
        if locked.state == VirtualNumber.State.RELEASED:
            raise NumberError(f"+{locked.number} was released; it is no longer rented.")
        if locked.service_id == (service.pk if service else None):
            return locked
        if in_use:
            raise NumberInUse(
                f"+{locked.number} is used by {in_use} open conversation{'s' if in_use != 1 else ''}; "
                "drain it and move it once they end."
            )
        locked.service = service
        locked.save(update_fields=["service", "updated_at"])
    return locked


def _lock_and_count(*, number: VirtualNumber, now: datetime | None) -> tuple[VirtualNumber, int]:
    """Lock the row, then count the open conversations using it; call inside a transaction.

    An allocation that chose this number from the pool and is inserting its participant
    holds, on PostgreSQL, a FOR KEY SHARE lock on the row (the foreign key check) until
    it commits. FOR UPDATE waits for it, and the count, a new statement in READ COMMITTED,
    then sees that participant. An allocation that inserts after we took the lock waits
    for our commit instead; proxy.services re-checks the number after its insert.
    """
    locked = VirtualNumber.objects.select_for_update().get(pk=number.pk)
    return locked, number_in_use_count(number=locked, now=now)


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

    Call it outside any transaction: each step below must commit on its own.

    1. Drain and commit, so no new allocation picks the number (allocation takes active
       numbers only). A plain UPDATE: it does not wait for in-flight allocations.
    2. In a new transaction, lock the row and count its open conversations (waiting for
       an in-flight allocation, see ``_lock_and_count``). In use: refused, and a number
       that was active before is active again. Otherwise it is released and committed.
    3. Cancel the rental at Vonage, outside any transaction, so a slow Vonage holds no
       lock. ``released_at`` is written once Vonage confirmed: a released row without it
       is still rented (and billed). Releasing such a row again retries the cancel.

    The row stays (past participants point at it) in state ``released``.
    """
    provider = provider or get_provider()
    now = now or timezone.now()
    current = VirtualNumber.objects.get(pk=number.pk)
    retrying = current.state == VirtualNumber.State.RELEASED
    if retrying and current.released_at is not None:
        return current
    if not retrying:
        drained_here = VirtualNumber.objects.filter(pk=number.pk, state=VirtualNumber.State.ACTIVE).update(
            state=VirtualNumber.State.DRAINING, updated_at=now
        )
        refusal = _release_in_pool(number=number, now=now, restore_active=bool(drained_here))
        if refusal is not None:
            raise refusal
    return _cancel_rental(number=number, provider=provider, now=now, retrying=retrying)


def _release_in_pool(*, number: VirtualNumber, now: datetime, restore_active: bool) -> NumberInUse | None:
    """Step 2 of ``number_release``; returns the refusal to raise once the restore committed."""
    with transaction.atomic():
        locked, in_use = _lock_and_count(number=number, now=now)
        if locked.state == VirtualNumber.State.RELEASED:
            return None  # released meanwhile by another request; the cancel is retried below
        if in_use:
            if restore_active and locked.state == VirtualNumber.State.DRAINING:
                locked.state = VirtualNumber.State.ACTIVE
                locked.save(update_fields=["state", "updated_at"])
            return NumberInUse(
                f"+{locked.number} is still used by {in_use} open conversation{'s' if in_use != 1 else ''}; "
                "drain it and release it once they end."
            )
        locked.state = VirtualNumber.State.RELEASED
        locked.released_at = None
        locked.save(update_fields=["state", "released_at", "updated_at"])
    return None


def _cancel_rental(*, number: VirtualNumber, provider: Provider, now: datetime, retrying: bool) -> VirtualNumber:
    """Step 3 of ``number_release``: end the rental at Vonage and write down when."""
    row = VirtualNumber.objects.get(pk=number.pk)
    if row.released_at is not None:
        return row  # another request released and cancelled it meanwhile
    try:
        provider.cancel_number(country=row.country, number=row.number)
    except ProviderError as exc:
        # A retry may follow a cancel that went through but whose answer was lost
        # (a timeout): Vonage then refuses to cancel a number the account no longer has.
        if not (retrying and _no_longer_rented(row=row, provider=provider)):
            logger.error(
                "number %s released in the pool but still rented at Vonage (cancel failed: %s); "
                "releasing it again retries the cancel",
                row.number,
                exc,
            )
            raise NumberStillRented(
                f"+{row.number} is released in our pool but still rented at Vonage (Vonage did not cancel it: "
                f"{exc}). Release it again to retry the cancel."
            ) from exc
    VirtualNumber.objects.filter(pk=row.pk, state=VirtualNumber.State.RELEASED).update(released_at=now, updated_at=now)
    row.refresh_from_db()
    return row


def _no_longer_rented(*, row: VirtualNumber, provider: Provider) -> bool:
    try:
        owned = provider.list_owned_numbers()
    except ProviderError:
        return False
    return all(item.number != row.number for item in owned)


def application_webhooks_configure(*, provider: Provider | None = None) -> VoiceWebhookUrls:
    """Point the Vonage application's voice webhooks at PUBLIC_URL, answer and event as POST.

    POST, not Vonage's GET default for the answer: the signed token's ``payload_hash``
    then covers the numbers the call is routed on.
    """
    provider = provider or get_provider()
    base = settings.PUBLIC_URL.rstrip("/")
    urls = VoiceWebhookUrls(
        answer_url=base + reverse("webhook-answer"),
        event_url=base + reverse("webhook-event"),
        fallback_url=base + reverse("webhook-fallback"),
    )
    provider.voice_webhooks_set(urls)
    return urls
