"""People's numbers hidden from what staff see of a played call (the try-it page).

Real numbers are personal data: every number in a transcript, an NCCO or a webhook payload
is shown masked (``proxy.phone.mask``), except the account's own virtual numbers, which
staff need to tell which proxy number was dialled or shown as caller ID.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from proxy.phone import from_webhook, mask

if TYPE_CHECKING:
    from harness.callplayer import PlayResult

NUMBER_KEYS = frozenset({"from", "to", "number"})
# A run of 6-15 digits standing alone: not part of a uuid ("-"), a decimal (".") or a word.
_NUMBER = re.compile(r"(?<![\w.\-])\+?\d{6,15}(?![\w\-]|\.\d)")


def text_mask(text: str, *, keep: Collection[str] = ()) -> str:
    """``text`` with every number-like run masked, except the digits in ``keep``."""

    def hide(match: re.Match[str]) -> str:
        digits = match.group(0).lstrip("+")
        return match.group(0) if digits in keep else mask(digits)

    return _NUMBER.sub(hide, text)


def payload_mask(payload: Any, *, keep: Collection[str] = ()) -> Any:
    """A copy of a JSON-like payload (webhook, NCCO, answer) with people's numbers masked."""
    if isinstance(payload, dict):
        return {key: _value_mask(key, value, keep) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [payload_mask(value, keep=keep) for value in payload]
    if isinstance(payload, str):
        return text_mask(payload, keep=keep)
    return payload


def _value_mask(key: Any, value: Any, keep: Collection[str]) -> Any:
    if key in NUMBER_KEYS and isinstance(value, str | int) and not isinstance(value, bool):
        digits = from_webhook(value)
        if digits is not None:
            return value if digits in keep else mask(digits)
    return payload_mask(value, keep=keep)


def own_numbers(*, candidates: Iterable[str]) -> frozenset[str]:
    """Which of ``candidates`` (E.164 digits) are the account's virtual numbers."""
    from virtual_numbers.models import VirtualNumber

    wanted = {c for c in candidates if c}
    if not wanted:
        return frozenset()
    return frozenset(VirtualNumber.objects.filter(number__in=wanted).values_list("number", flat=True))


def _digits_in(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _digits_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _digits_in(item)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        for match in _NUMBER.finditer(str(value)):
            yield match.group(0).lstrip("+")


def played_call_shown(*, result: PlayResult) -> dict[str, Any]:
    """What the try-it page shows of ``result``, people's numbers masked throughout."""
    keep = own_numbers(
        candidates=_digits_in([[leg.from_number, leg.to_number] for leg in result.legs] + [result.nccos])
    )
    connected = result.connected
    return {
        "keep": keep,
        "error": text_mask(result.error, keep=keep),
        "hook": text_mask(result.hook, keep=keep),
        "connected": (
            {
                "to_number": text_mask(connected.to_number, keep=keep),
                "from_number": text_mask(connected.from_number, keep=keep),
                "status": connected.status,
                "duration": connected.duration,
                "price": connected.price,
            }
            if connected
            else None
        ),
        "transcript": [text_mask(line, keep=keep) for line in result.transcript],
        "ncco_count": len(result.nccos),
        "nccos_json": json.dumps(payload_mask(result.nccos, keep=keep), indent=2),
        "steps": [
            {
                "at": step.at,
                "method": step.method,
                "path": text_mask(step.path, keep=keep),
                "status": step.status,
                "summary": text_mask(str(step.payload.get("status") or "payload"), keep=keep),
                "payload_json": json.dumps(payload_mask(step.payload, keep=keep), indent=2),
                "response_json": ""
                if step.response is None
                else json.dumps(payload_mask(step.response, keep=keep), indent=2),
            }
            for step in result.steps
        ],
    }
