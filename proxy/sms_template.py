"""A service's SMS template: checked when saved, rendered without ``str.format``'s powers.

``str.format`` would follow ``{counterpart.name}`` and ``{service[x]}`` into attributes
and items (an error for every conversation of that service) and pad ``{name:>100000000}``
to 100 MB. Here a template holds text, ``{{``/``}}`` for braces, and the plain
placeholders below; nothing else.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

PLACEHOLDERS = ("service", "name", "counterpart", "proxy_number", "pin")

_FORMATTER = string.Formatter()


def _fields(template: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """``string.Formatter().parse`` as a list; raises ValueError for unbalanced braces."""
    return list(_FORMATTER.parse(template))


def sms_template_errors(template: str) -> list[str]:
    """What is wrong with ``template`` (empty when it may be saved), for a form to show."""
    try:
        fields = _fields(template)
    except ValueError:
        return ["Unbalanced braces: write {{ and }} for a brace, {name} for a placeholder."]
    allowed = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    errors = []
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            errors.append(f"Unknown placeholder {{{field}}}: use {allowed}.")
        elif spec or conversion:
            errors.append(f"Write {{{field}}} alone: no format specification or conversion.")
    return errors


def sms_template_render(template: str, values: Mapping[str, str]) -> str | None:
    """``template`` with its plain placeholders replaced by ``values``; anything else in
    braces stays as written. None when the braces do not balance."""
    try:
        fields = _fields(template)
    except ValueError:
        return None
    parts = []
    for literal, field, spec, conversion in fields:
        parts.append(literal)
        if field is None:
            continue
        if field in values and not spec and conversion is None:
            parts.append(values[field])
        else:
            parts.append("{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return "".join(parts)
