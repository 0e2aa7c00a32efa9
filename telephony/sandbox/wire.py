"""The sandbox's request and reply types, and the error shapes Vonage's REST APIs share."""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

ERRORS_BASE = "https://developer.nexmo.com/api-errors"


@dataclass
class SandboxRequest:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    authorization: str = ""


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list as JSON, bytes as a file, None for no content
    content_type: str = "application/json"
    hold_seconds: float = 0.0  # > 0: a timeout was injected; the server answers nothing that long

    @property
    def is_timeout(self) -> bool:
        return self.hold_seconds > 0


def voice_error(status: int, kind: str, title: str, detail: str) -> Reply:
    return Reply(
        status,
        {"type": f"{ERRORS_BASE}#{kind}", "title": title, "detail": detail, "instance": str(uuidlib.uuid4())},
    )


def validation_error(name: str, reason: str) -> Reply:
    """Voice API's 400 for one invalid parameter."""
    return Reply(
        400,
        {
            "type": f"{ERRORS_BASE}/voice#validation",
            "title": "Bad Request",
            "invalid_parameters": [{"name": name, "reason": reason}],
        },
    )


def int_param(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(raw or default), low), high)
    except ValueError:
        return default


def reply_json(reply: Reply) -> bytes:
    return b"" if reply.body is None else json.dumps(reply.body).encode()
