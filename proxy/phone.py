"""Phone numbers in and out: parse what people type, store E.164 digits without ``+``.

Numbers are personal data: use ``mask`` whenever one goes into a log line or a list.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"\d{6,15}")


class InvalidNumber(ValueError):
    """The input is not a valid phone number; the message is fit for an API error."""


def _valid_digits(candidate: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(candidate, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)[1:]


def normalize(raw: str, *, country: str | None = None, default_country: str | None = None) -> str:
    """Return E.164 digits for ``raw`` or raise InvalidNumber.

    International forms come first ("+44 20 7946 0000", "0044...", bare digits as Vonage
    writes them); what is not a valid international number is read as national with
    ``country`` (the participant's hint) or else ``default_country`` (the service's).
    Only numbers phonenumbers calls *valid* pass, not merely possible ones.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidNumber("Enter a phone number.")
    compact = _SEPARATORS.sub("", text)
    if compact.startswith("+"):
        digits = _valid_digits(compact, None)
        if digits:
            return digits
        raise InvalidNumber(f"{_shown(text)} is not a valid international phone number.")
    hint = (country or "").upper() or None
    region = hint or (default_country or "").upper() or None
    if compact.isdigit():
        if compact.startswith("00"):
            digits = _valid_digits("+" + compact[2:], None)
            if digits:
                return digits
        # An explicit hint wins over an accidental international reading of bare
        # digits ("2015550123" with country US is New Jersey, not Egypt), and so does
        # the national reading of what a person formatted ("(201) 555-0123").
        national_first = hint if compact == text else region
        if national_first:
            digits = _valid_digits(compact, national_first)
            if digits:
                return digits
        digits = _valid_digits("+" + compact, None)
        if digits:
            return digits
    if region:
        digits = _valid_digits(text, region)
        if digits:
            return digits
        raise InvalidNumber(f"{_shown(text)} is not a valid phone number, internationally or in {region}.")
    raise InvalidNumber(f"{_shown(text)} is not a valid international number; give a country for national ones.")


def from_webhook(raw: object) -> str | None:
    """Digits of a number Vonage sent (``+``, spaces allowed), or None for anything else.

    Withheld IDs ("Unknown", ""), SIP URIs and garbage give None: an unknown caller.
    """
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        return None
    compact = _SEPARATORS.sub("", str(raw)).removeprefix("+")
    if compact.startswith("00"):
        compact = compact[2:]
    if not _DIGITS.fullmatch(compact):
        return None
    return compact


def valid_digits(digits: str | None) -> str | None:
    """``digits`` (E.164, no ``+``) when they are a valid number, else None."""
    if not digits:
        return None
    return _valid_digits("+" + digits, None)


def region_of(digits: str) -> str:
    """ISO country of an E.164 number ("" when phonenumbers cannot tell)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits, None)) or ""
    except NumberParseException:
        return ""


def mask(digits: str | None) -> str:
    """Hide the middle of a number, as lists and logs show it: 44770****123."""
    if not digits:
        return ""
    if len(digits) <= 6:
        return "*" * len(digits)
    keep_head = min(5, len(digits) - 7) if len(digits) > 9 else 2
    return digits[:keep_head] + "*" * (len(digits) - keep_head - 3) + digits[-3:]


def pretty(digits: str) -> str:
    """International format for humans: +44 7700 900123."""
    try:
        return phonenumbers.format_number(phonenumbers.parse("+" + digits, None), PhoneNumberFormat.INTERNATIONAL)
    except NumberParseException:
        return "+" + digits


def _shown(text: str) -> str:
    return repr(text[:32])
