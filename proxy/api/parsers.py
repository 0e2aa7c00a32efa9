"""The API's JSON parser: every malformed or absurd body is a 400, never a 500."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from proxy.parsers import loads_strict


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return loads_strict(stream.read() if stream is not None else b"")
        except ValueError as exc:
            raise ParseError(str(exc)) from exc
