"""The participant rule, one for every way in (the API, the admin, commands, hooks).

A participant is given as a number in any form people type, an optional name and an
optional country hint; it becomes a ``Person``: E.164 digits, a name, and the country of
the number (else the hint). A conversation has exactly two, with different numbers.
Pure code: the error texts here are the ones the API shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import phonenumbers

from proxy import phone
from proxy.errors import InvalidInput

MAX_NAME = 100
COUNTRY_ERROR = "Give an ISO 3166-1 alpha-2 country code, such as US or GB."
SAME_NUMBER_ERROR = "The two participants must have different numbers."


class ParticipantInput(TypedDict):
    number: str
    name: NotRequired[str]
    country: NotRequired[str]


class Person(TypedDict):
    """A validated participant: E.164 digits, a name (may be empty), a country (may be empty)."""

    number: str
    name: str
    country: str


def pair_size_error(given: int) -> str:
    return f"Give exactly two participants ({given} given)."


def country_hint(raw: str | None) -> str:
    """The hint upper-cased ("" when none); raises ValueError(COUNTRY_ERROR) for an unknown region."""
    value = (raw or "").upper()
    if value and value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(COUNTRY_ERROR)
    return value


def number_normalize(number: str, *, country: str | None, default_country: str) -> str:
    """E.164 digits of a participant's number (see ``proxy.phone.normalize``); raises InvalidNumber."""
    return phone.normalize(number, country=country or None, default_country=default_country)


def person_build(*, digits: str, name: str | None, country: str | None) -> Person:
    """The Person for a number already normalised: its country is the number's own region."""
    return {"number": digits, "name": name or "", "country": phone.region_of(digits) or (country or "")}


def person_normalize(item: Mapping[str, Any], *, default_country: str) -> Person:
    """One participant; raises InvalidInput naming each bad field (number, name, country)."""
    errors: dict[str, list[str]] = {}
    try:
        hint = country_hint(item.get("country"))
    except ValueError as exc:
        errors["country"] = [str(exc)]
        hint = ""
    name = item.get("name") or ""
    if len(name) > MAX_NAME:
        errors["name"] = [f"Ensure this field has no more than {MAX_NAME} characters."]
    try:
        digits = number_normalize(str(item.get("number") or ""), country=hint, default_country=default_country)
    except phone.InvalidNumber as exc:
        errors["number"] = [str(exc)]
    if errors:
        raise InvalidInput(errors)
    return person_build(digits=digits, name=name, country=hint)


def participants_normalize(participants: Sequence[Mapping[str, Any]], *, default_country: str) -> list[Person]:
    """Exactly two participants with different numbers; raises InvalidInput shaped like the
    API's field errors (``{"participants": [...]}``, one object per participant)."""
    if len(participants) != 2:
        raise InvalidInput({"participants": [pair_size_error(len(participants))]})
    errors: list[dict[str, list[str]]] = []
    people: list[Person] = []
    for item in participants:
        try:
            people.append(person_normalize(item, default_country=default_country))
            errors.append({})
        except InvalidInput as exc:
            errors.append(exc.errors)
    if any(errors):
        raise InvalidInput({"participants": errors})
    if people[0]["number"] == people[1]["number"]:
        raise InvalidInput({"participants": [{}, {"number": [SAME_NUMBER_ERROR]}]})
    return people
