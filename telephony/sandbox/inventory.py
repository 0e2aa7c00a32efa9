"""Numbers the sandbox has for sale: generated per country, the same on every run.

A country's inventory comes from phonenumbers' example numbers with their last digits
varied, kept only when ``is_valid_number`` says so, so that whatever a newcomer buys
passes the product's own number validation. The US gets the New Jersey 201-555-03xx
block (valid, and clear of the 555-01xx block the docs use for people).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

INVENTORY_SIZE = 50

_COSTS = {"mobile-lvn": "0.90", "landline": "0.75", "landline-toll-free": "1.50"}

# Vonage names its number types after the network; phonenumbers after the line.
_TYPES = (
    ("mobile-lvn", PhoneNumberType.MOBILE, ("VOICE", "SMS")),
    ("landline", PhoneNumberType.FIXED_LINE, ("VOICE",)),
)


@dataclass(frozen=True)
class ForSale:
    msisdn: str
    country: str
    number_type: str
    features: tuple[str, ...]
    cost: str

    def as_vonage(self) -> dict:
        return {
            "country": self.country,
            "msisdn": self.msisdn,
            "type": self.number_type,
            "cost": self.cost,
            "features": list(self.features),
        }


def _variants(example: phonenumbers.PhoneNumber, count: int, taken: set[str]) -> list[str]:
    digits = phonenumbers.format_number(example, PhoneNumberFormat.E164)[1:]
    head = digits[:-3]
    found: list[str] = []
    for tail in range(300, 1000):
        candidate = f"{head}{tail:03d}"
        # Where mobile and landline examples coincide (the NANP), the landlines take the next tails.
        if candidate not in taken and phonenumbers.is_valid_number(phonenumbers.parse("+" + candidate, None)):
            found.append(candidate)
        if len(found) == count:
            break
    return found


@lru_cache(maxsize=64)
def inventory(country: str) -> tuple[ForSale, ...]:
    """Every number for sale in ``country`` (ISO alpha-2), owned or not; () for unknown countries."""
    country = country.upper()
    if country == "US":
        return tuple(
            ForSale(f"1201555{n:04d}", "US", "mobile-lvn", ("VOICE", "SMS"), _COSTS["mobile-lvn"])
            for n in range(300, 300 + INVENTORY_SIZE)
        )
    numbers: list[ForSale] = []
    per_type = INVENTORY_SIZE // len(_TYPES)
    for vonage_type, pn_type, features in _TYPES:
        example = phonenumbers.example_number_for_type(country, pn_type)
        if example is None:
            continue
        numbers.extend(
            ForSale(msisdn, country, vonage_type, features, _COSTS[vonage_type])
            for msisdn in _variants(example, per_type, {n.msisdn for n in numbers})
        )
    return tuple(numbers)


def for_sale_lookup(msisdn: str) -> ForSale | None:
    """The inventory entry for ``msisdn``, whatever its country, or None."""
    return next((n for n in inventory(_region(msisdn)) if n.msisdn == msisdn), None)


def _region(msisdn: str) -> str:
    """ISO country of E.164 digits ("" when phonenumbers cannot tell, which sells nothing)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + msisdn, None)) or ""
    except NumberParseException:
        return ""
