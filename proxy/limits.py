"""The limits a conversation's inputs keep, wherever they come from (the API, a hook's reply).

Pure code: the error texts here are the ones the API shows.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.models import MAX_CALL_TIME_LIMIT, MAX_RING_TIMEOUT, MIN_CALL_TIME_LIMIT, MIN_RING_TIMEOUT
from proxy.parsers import json_strings

__all__ = ["MAX_CALL_TIME_LIMIT", "MAX_RING_TIMEOUT", "MIN_CALL_TIME_LIMIT", "MIN_RING_TIMEOUT"]

MAX_EXTERNAL_ID = 200
MAX_METADATA_BYTES = 8 * 1024
MIN_TTL = 1
MAX_TTL = 365 * 24 * 3600


def metadata_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a conversation's metadata, or None when it can.

    A JSON object of at most MAX_METADATA_BYTES serialised, storable as-is in PostgreSQL
    jsonb (which cannot hold U+0000).
    """
    if not isinstance(value, dict):
        return "Give a JSON object."
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if len(encoded) > MAX_METADATA_BYTES:
        return f"At most {MAX_METADATA_BYTES} bytes of JSON ({len(encoded)} given)."
    if any("\x00" in item for item in json_strings(value)):
        return "Null characters are not allowed."
    return None
