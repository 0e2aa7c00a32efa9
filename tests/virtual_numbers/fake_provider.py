"""A small in-memory Provider for unit tests of provisioning (numbers only)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from telephony.provider import (
    AvailableNumber,
    CallInfo,
    InsightResult,
    OwnedNumber,
    Provider,
    ProviderError,
    SmsResult,
    Writable,
)


class FakeProvider(Provider):
    name = "fake"

    def __init__(self, *, for_sale: list[AvailableNumber] | None = None) -> None:
        self.for_sale = {n.number: n for n in (for_sale or [])}
        self.owned: dict[str, OwnedNumber] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_link = False
        self.fail_cancel = False

    # Numbers
    def search_numbers(
        self,
        *,
        country: str,
        number_type: str = "",
        features: tuple[str, ...] = ("VOICE",),
        pattern: str = "",
        size: int = 10,
    ) -> list[AvailableNumber]:
        self.calls.append(("search", {"country": country, "pattern": pattern}))
        found = [
            n
            for n in self.for_sale.values()
            if n.country == country
            and (not number_type or n.number_type == number_type)
            and set(features) <= set(n.features)
            and pattern in n.number
        ]
        return found[:size]

    def buy_number(self, *, country: str, number: str) -> None:
        self.calls.append(("buy", {"country": country, "number": number}))
        offer = self.for_sale.pop(number, None)
        if offer is None:
            raise ProviderError("Number not for sale", permanent=True, code="420")
        self.owned[number] = OwnedNumber(number, country, offer.number_type, offer.features)

    def cancel_number(self, *, country: str, number: str) -> None:
        self.calls.append(("cancel", {"country": country, "number": number}))
        if self.fail_cancel:
            raise ProviderError("Cancel refused", permanent=True)
        self.owned.pop(number, None)

    def link_number(self, *, country: str, number: str, app_id: str = "") -> None:
        self.calls.append(("link", {"country": country, "number": number, "app_id": app_id}))
        if self.fail_link:
            raise ProviderError("Link failed", permanent=False)
        owned = self.owned[number]
        self.owned[number] = OwnedNumber(
            owned.number, owned.country, owned.number_type, owned.features, app_id or "app"
        )

    def list_owned_numbers(self) -> list[OwnedNumber]:
        return list(self.owned.values())

    # Unused by provisioning
    def send_sms(self, **kwargs: Any) -> SmsResult:  # type: ignore[override]
        raise NotImplementedError

    def number_insight(self, number: str, *, level: str = "standard") -> InsightResult:
        raise NotImplementedError

    def get_call(self, uuid: str) -> CallInfo:
        raise NotImplementedError

    def hangup_call(self, uuid: str) -> None:
        raise NotImplementedError

    def transfer_call(self, uuid: str, *, ncco: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def talk_into_call(self, uuid: str, *, text: str, language: str = "en-US") -> None:
        raise NotImplementedError

    def stream_into_call(self, uuid: str, *, url: str) -> None:
        raise NotImplementedError

    def download_file(self, url: str, into: Writable, *, max_bytes: int, max_seconds: float) -> int:
        raise NotImplementedError


def offer(number: str, *, country: str = "US", features: tuple[str, ...] = ("VOICE", "SMS")) -> AvailableNumber:
    return AvailableNumber(number, country, "mobile-lvn", features, Decimal("0.90"))
