"""Strict JSON: malformed or absurd input is a ValueError, and what webhooks keep is storable."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 32


def json_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Depth of nested lists/objects, computed without recursion; stops counting past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, keys included, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _clean_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _plain_text(fields: dict[Any, Any]) -> bool:
    """Whether every name and value is ASCII text without a NUL, so already storable: the
    usual voice webhook (numbers and ids), told in one pass over one string instead of a
    call per string (issue 17). Anything else (a number, a list, non-ASCII text) says no."""
    try:
        joined = "".join([*fields, *fields.values()])
    except TypeError:
        return False
    return joined.isascii() and "\x00" not in joined


def storable(value: Any) -> Any:
    """A copy of parsed JSON that any database can store: NUL characters and lone
    surrogates become replacement characters (PostgreSQL refuses both in text and jsonb).

    For payloads we must keep whatever they hold (webhooks); the API refuses such input instead.
    """
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        if _plain_text(value):
            return dict(value)
        return {_clean_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _has_lone_surrogate(value: Any) -> bool:
    # "\ud800" is well-formed JSON but cannot be encoded as UTF-8: the database would fail on it.
    for item in json_strings(value):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def loads_strict(raw: bytes | str) -> Any:
    """Parse JSON or raise ValueError: bad encoding, bad syntax, NaN/Infinity, too deep."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        raise ValueError(f"Malformed JSON: {exc}") from exc
    if json_depth(value) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels.")
    if _has_lone_surrogate(value):
        raise ValueError("Malformed JSON: a string holds an unpaired surrogate.")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON.")


def _finite_float(text: str) -> float:
    # 1e999 parses as infinity, which no JSON encoder can write back.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range.")
    return value


# int() refuses more digits than this (CVE-2020-10735); such a number reads as null.
_MAX_INT_DIGITS = 4000


def _lenient_int(text: str) -> int | None:
    return int(text) if len(text) <= _MAX_INT_DIGITS else None


def _lenient_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def loads_lenient(raw: bytes) -> Any:
    """Parse JSON reading what cannot be kept (NaN, Infinity, numbers past any range) as
    null, and undecodable bytes as replacement characters; None when it is not JSON at all
    or too deep. For webhooks, which must act on the fields they can read.
    """
    try:
        value = json.loads(
            raw.decode("utf-8", "replace"),
            parse_constant=lambda name: None,
            parse_int=_lenient_int,
            parse_float=_lenient_float,
        )
    except (RecursionError, ValueError):
        return None
    return None if json_depth(value) > MAX_DEPTH else value
