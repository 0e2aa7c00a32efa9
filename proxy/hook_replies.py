"""What a marketplace hook answered, read strictly: pure code, no I/O.

The out-of-session hook's 200 JSON reply is one of three actions (DESIGN.md, "Out of
session"); anything else is an ``InvalidReply`` whose message says why without echoing
the reply (it may hold real numbers). Numbers are read later, with the service's
default country, by ``proxy.participants``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.limits import MAX_EXTERNAL_ID, MAX_TTL, MIN_TTL, metadata_problem
from proxy.parsers import loads_strict

MAX_TALK_TEXT = 1000
MAX_NUMBER_TEXT = 64
ACTIONS = ("talk", "connect", "open")


class InvalidReply(ValueError):
    """The reply is not one the contract defines."""


@dataclass(frozen=True)
class TalkReply:
    text: str


@dataclass(frozen=True)
class ConnectReply:
    number: str  # as given: read like a number in the API


@dataclass(frozen=True)
class OpenReply:
    participant: dict[str, Any]  # {number, name?, country?} as given
    ttl: int | None = None
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


Reply = TalkReply | ConnectReply | OpenReply


def reply_json(body: bytes) -> Any:
    """The reply's JSON value; InvalidReply for an empty, non-UTF-8, non-JSON or absurdly nested body."""
    if not body.strip():
        raise InvalidReply("empty reply")
    try:
        return loads_strict(body)
    except ValueError:
        raise InvalidReply("reply is not JSON") from None


def _text(value: Any, name: str, *, limit: int, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidReply(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise InvalidReply(f"{name} longer than {limit} characters")
    if "\x00" in value:
        raise InvalidReply(f"{name} holds a null character")
    return value


def out_of_session_reply_parse(value: Any) -> Reply:
    """The action of an out-of-session hook's reply (``reply_json``'s value)."""
    if not isinstance(value, dict):
        raise InvalidReply("reply is not a JSON object")
    action = value.get("action")
    if action not in ACTIONS:
        raise InvalidReply("action is not talk, connect or open")
    if action == "talk":
        return TalkReply(text=_text(value.get("text"), "text", limit=MAX_TALK_TEXT))
    if action == "connect":
        number = value.get("number")
        if isinstance(number, int) and not isinstance(number, bool):
            number = str(number)
        return ConnectReply(number=_text(number, "number", limit=MAX_NUMBER_TEXT))
    person = value.get("participant")
    if not isinstance(person, dict):
        raise InvalidReply("participant must be an object")
    number = person.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    participant: dict[str, Any] = {"number": _text(number, "participant.number", limit=MAX_NUMBER_TEXT)}
    for key in ("name", "country"):
        if person.get(key) is not None:
            participant[key] = _text(person[key], f"participant.{key}", limit=200, required=False)
    ttl = value.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL <= ttl <= MAX_TTL):
        raise InvalidReply(f"ttl must be a whole number of seconds from {MIN_TTL} to {MAX_TTL}")
    external_id = _text(value.get("external_id"), "external_id", limit=MAX_EXTERNAL_ID, required=False)
    metadata = value.get("metadata")
    if metadata is None:
        metadata = {}
    problem = metadata_problem(metadata)
    if problem is not None:
        raise InvalidReply(f"metadata: {problem}")
    return OpenReply(participant=participant, ttl=ttl, external_id=external_id, metadata=metadata)
