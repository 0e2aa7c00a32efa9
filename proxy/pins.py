"""PINs: six digits that tell the conversations on one proxy number apart.

With the service's ``pin_mode`` on, every participant of a new conversation gets a
PIN, unique among the open conversations on that participant's proxy number (the
partial unique index ``participant_unique_open_pin``). A caller the number cannot
route by caller ID is asked for one (``fallback``), or every caller is (``always``);
the PIN's owner is then treated exactly as if they had called from their own phone.

PINs are secrets: drawn from ``secrets``, never logged, masked in the console and
redacted from stored input events. Reads and pure code only (layer 4): what a
prompt's token says, what an input event's keys mean, whose PIN it is, whether a
caller is locked out.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.core import signing
from django.db.models import Q

from proxy.models import Conversation, Participant, PinCall, Service
from proxy.selectors import pin_holder

PIN_LENGTH = 6
PIN_SPACE = 10**PIN_LENGTH
# Inputs one call gets before the decision point (webhooks.pin_services.pin_tries_exhausted).
PIN_TRIES = 3
# Brute force: this many failed calls in a row, from one caller on one number, within
# the window, and that caller hears goodbye at once on that number for LOCKOUT_FOR.
LOCKOUT_CALLS = 3
LOCKOUT_WINDOW = timedelta(minutes=10)
LOCKOUT_FOR = timedelta(hours=1)
# The prompt's token outlives any call that could still be asking for a PIN.
PROMPT_MAX_AGE = timedelta(hours=2)
# Query parameter of the input eventUrl that carries the prompt's token.
PROMPT_PARAM = "prompt"

_CANDIDATES = 8
_DRAW_ROUNDS = 4
_TOKEN_SALT = "proxy.pins.prompt"  # noqa: S105 (a namespace for the signature, not a secret)


class NoFreePin(Exception):
    """Every PIN drawn for ``proxy_number`` was taken: the number is (nearly) full."""

    def __init__(self, proxy_number: str) -> None:
        super().__init__(f"No PIN is free on proxy number {proxy_number}.")
        self.proxy_number = proxy_number


def pin_draw() -> str:
    """One PIN from the operating system's cryptographic source: six digits, uniform."""
    return f"{secrets.randbelow(PIN_SPACE):0{PIN_LENGTH}d}"


def pins_choose(*, proxy_numbers: Sequence[str], now: datetime, draw: Callable[[], str] | None = None) -> list[str]:
    """A PIN for each participant, given each one's proxy number, in one read per round.

    Never one held by an open conversation on the same number, nor one still cooling
    there (a late call with an old PIN must not reach a new counterpart), nor one given
    to the other participant on the same number. Concurrent creations can still draw
    the same PIN: the unique index refuses the second and the creation is retried.
    Raises NoFreePin when a number has no free PIN left in the draws.
    """
    draw = draw or pin_draw
    chosen: list[str | None] = [None] * len(proxy_numbers)
    for _ in range(_DRAW_ROUNDS):
        missing = [i for i, pin in enumerate(chosen) if pin is None]
        if not missing:
            break
        candidates = {i: [draw() for _ in range(_CANDIDATES)] for i in missing}
        taken = _pins_held(
            proxy_numbers={proxy_numbers[i] for i in missing},
            pins={pin for drawn in candidates.values() for pin in drawn},
            now=now,
        )
        for i in missing:
            given = {(proxy_numbers[j], pin) for j, pin in enumerate(chosen) if pin is not None}
            chosen[i] = next(
                (p for p in candidates[i] if (proxy_numbers[i], p) not in taken | given),
                None,
            )
    for i, pin in enumerate(chosen):
        if pin is None:
            raise NoFreePin(proxy_numbers[i])
    return [pin for pin in chosen if pin is not None]


def _pins_held(*, proxy_numbers: set[str], pins: set[str], now: datetime) -> set[tuple[str, str]]:
    """(proxy number, PIN) pairs among these that are open or cooling (participant_pin_recent)."""
    rows = (
        Participant.objects.filter(proxy_number__number__in=proxy_numbers, pin__in=pins, pin__isnull=False)
        .filter(Q(active=True) | Q(cooldown_until__gt=now))
        .values_list("proxy_number_id", "pin")
    )
    return {(str(number), pin) for number, pin in rows if pin is not None}


# --- The prompt's token ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """What a PIN prompt asked: for which call, on which number, which try (1..PIN_TRIES)."""

    call_uuid: str
    proxy_number: str
    try_number: int


def prompt_token(prompt: Prompt) -> str:
    """A signed, timestamped token for the input eventUrl: the input event then knows,
    without any row written while the caller waited, that this call was prompted and
    which try it answers. A repeated event carries the same token: the same answer."""
    value = {"u": prompt.call_uuid, "v": prompt.proxy_number, "n": prompt.try_number}
    return signing.dumps(value, salt=_TOKEN_SALT, compress=False)


def prompt_from_token(token: str | None) -> Prompt | None:
    """The prompt a token names; None for a missing, forged, stale or malformed one."""
    if not token or len(token) > 500:
        return None
    try:
        value = signing.loads(token, salt=_TOKEN_SALT, max_age=PROMPT_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict):
        return None
    uuid, number, try_number = value.get("u"), value.get("v"), value.get("n")
    if not isinstance(uuid, str) or not isinstance(number, str) or not isinstance(try_number, int):
        return None
    return Prompt(call_uuid=uuid, proxy_number=number, try_number=try_number)


# --- What the caller keyed in ----------------------------------------------------------------------


@dataclass(frozen=True)
class PinInput:
    """An input event read: ``pin`` (six digits, in ``digits``), ``invalid`` (keys that
    cannot be a PIN: too few or many, ``*``, ``#``), ``empty`` (nothing, or timed out
    with nothing) or ``speech`` (spoken words, no keys)."""

    kind: Literal["pin", "invalid", "empty", "speech"]
    digits: str = ""

    @property
    def keyed(self) -> bool:
        """Keys were pressed: a wrong PIN (as opposed to none at all)."""
        return self.kind in ("pin", "invalid")


def pin_input_read(payload: Mapping[str, Any]) -> PinInput:
    """Vonage's input event (``dtmf: {digits, timed_out}``, ``speech: {results}``), any shape."""
    dtmf = payload.get("dtmf")
    digits = dtmf.get("digits") if isinstance(dtmf, dict) else None
    keys = digits if isinstance(digits, str) else ""
    if keys:
        if len(keys) == PIN_LENGTH and keys.isascii() and keys.isdigit():
            return PinInput(kind="pin", digits=keys)
        return PinInput(kind="invalid")
    speech = payload.get("speech")
    results = speech.get("results") if isinstance(speech, dict) else None
    if isinstance(results, list) and results:
        return PinInput(kind="speech")
    return PinInput(kind="empty")


# --- Whose PIN ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinMatch:
    """A PIN's owner on a number. ``live``: the conversation is open (``counterpart`` is
    who the call reaches); ``ended``: it ended within its cooldown."""

    kind: Literal["live", "ended"]
    owner: Participant
    conversation: Conversation
    service: Service
    counterpart: Participant | None = None


def pin_owner(*, proxy_number: str, pin: str, now: datetime) -> PinMatch | None:
    """The participant holding ``pin`` on ``proxy_number``: open, or cooling down; else None."""
    held = pin_holder(proxy_number=proxy_number, pin=pin, now=now)
    if held is None:
        return None
    owner, counterpart = held
    conversation = owner.conversation
    service = conversation.service
    if owner.active and conversation.expires_at > now:
        return PinMatch(kind="live", owner=owner, conversation=conversation, service=service, counterpart=counterpart)
    # Past expires_at before any sweep wrote it down: ended during its cooldown, then unknown.
    if owner.active and now >= conversation.expires_at + timedelta(seconds=service.cooldown):
        return None
    return PinMatch(kind="ended", owner=owner, conversation=conversation, service=service)


# --- Brute force ----------------------------------------------------------------------------------


def caller_locked(*, proxy_number: str, caller: str, now: datetime, except_call: str = "") -> bool:
    """Whether ``caller`` ("" when withheld) is locked out of PINs on ``proxy_number`` now."""
    rows = PinCall.objects.filter(proxy_number=proxy_number, caller=caller, locked_until__gt=now)
    if except_call:
        rows = rows.exclude(call_uuid=except_call)
    return rows.exists()


def lockout_after_failure(*, pin_call: PinCall) -> datetime | None:
    """When ``pin_call`` has just failed: the end of the lockout its failure starts, if it is
    the LOCKOUT_CALLS-th failed call in a row of its caller on its number within the window.

    Calls in which nothing was keyed and that did not run out of tries do not count,
    either way; a connected call (or a right PIN of an ended conversation) breaks the row.
    """
    if pin_call.failed_at is None:
        return None
    previous = list(
        PinCall.objects.filter(proxy_number=pin_call.proxy_number, caller=pin_call.caller)
        .exclude(call_uuid=pin_call.call_uuid)
        .exclude(outcome=PinCall.Outcome.PENDING)
        .filter(created_at__lte=pin_call.created_at)
        .order_by("-created_at", "-pk")
        .values_list("outcome", "failed_at")[: LOCKOUT_CALLS - 1]
    )
    if len(previous) < LOCKOUT_CALLS - 1:
        return None
    if any(outcome != PinCall.Outcome.FAILED or failed_at is None for outcome, failed_at in previous):
        return None
    first = min(failed_at for _, failed_at in previous if failed_at is not None)
    if pin_call.failed_at - first > LOCKOUT_WINDOW:
        return None
    return pin_call.failed_at + LOCKOUT_FOR
