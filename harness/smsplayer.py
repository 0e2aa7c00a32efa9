"""The SMS player: Vonage's side of an inbound SMS and of delivery receipts, against a running server.

``sms_play`` sends a text to ``/webhooks/sms/inbound`` the way Vonage delivers one: POST
JSON with ``msisdn``, ``to``, ``messageId``, ``text``, ``type``, ``keyword`` and
``message-timestamp``, signed with the SMS ``sig`` (``webhooks.signatures``) when a
secret is given. A text too long for one SMS is cut into concatenated parts as a phone
would (160 GSM characters in one SMS, 153 a part; 70 and 67 in unicode), each with its
own ``messageId`` and the ``concat`` fields. ``receipts_play`` sends the delivery
receipts of SMS the sandbox sent, to ``/webhooks/sms/status``.

Transports are the call player's (``harness.callplayer``): real HTTP for
``simulate_sms``, Django's test client for the try-it page.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harness.callplayer import PlayerError, Transport
from telephony.models import SandboxMessage
from telephony.text import needs_unicode
from webhooks.signatures import sms_sign_params

INBOUND_PATH = "/webhooks/sms/inbound"
STATUS_PATH = "/webhooks/sms/status"


@dataclass(frozen=True)
class SmsStep:
    """One webhook the player sent."""

    path: str
    label: str
    params: dict[str, str]
    status: int


@dataclass
class SmsPlay:
    steps: list[SmsStep] = field(default_factory=list)
    error: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def sms_parts(text: str) -> list[str]:
    """``text`` cut the way a phone cuts a long SMS (by characters; unicode when it needs to be)."""
    single, each = (70, 67) if needs_unicode(text) else (160, 153)
    if len(text) <= single:
        return [text]
    return [text[i : i + each] for i in range(0, len(text), each)]


def _message_id() -> str:
    return uuid.uuid4().hex[:16].upper()


def _send(transport: Transport, path: str, params: dict[str, str], *, secret: str, method: str) -> int:
    if secret:
        params = sms_sign_params(params, secret=secret, method=method)
    body = json.dumps(params).encode()
    answer = transport.send("POST", path, body=body, headers={"Content-Type": "application/json"})
    return answer.status


def sms_play(
    transport: Transport, *, sender: str, to: str, text: str, secret: str = "", method: str = "md5hash"
) -> SmsPlay:
    """Send ``text`` from ``sender`` to the pool number ``to`` (E.164 digits), in parts if it is long."""
    play = SmsPlay()
    parts = sms_parts(text)
    ref = f"{random.randrange(256):02X}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    for number, part in enumerate(parts, start=1):
        params = {
            "msisdn": sender,
            "to": to,
            "messageId": _message_id(),
            "text": part,
            "type": "unicode" if needs_unicode(text) else "text",
            "keyword": (part.split() or [""])[0].upper(),
            "message-timestamp": stamp,
        }
        if len(parts) > 1:
            params.update({"concat": "true", "concat-ref": ref, "concat-total": str(len(parts)),
                           "concat-part": str(number)})  # fmt: skip
        label = f"inbound SMS, part {number} of {len(parts)}" if len(parts) > 1 else "inbound SMS"
        try:
            status = _send(transport, INBOUND_PATH, params, secret=secret, method=method)
        except PlayerError as error:
            play.error, play.exit_code = str(error), error.code
            return play
        play.steps.append(SmsStep(INBOUND_PATH, label, params, status))
        if not 200 <= status < 300:
            play.error, play.exit_code = f"{INBOUND_PATH} answered HTTP {status}", 1
            return play
    return play


def receipts_play(
    transport: Transport,
    *,
    messages: Iterable[SandboxMessage],
    status: str = "delivered",
    secret: str = "",
    method: str = "md5hash",
) -> SmsPlay:
    """Send Vonage's delivery receipt (``status``) for each SMS the sandbox sent."""
    play = SmsPlay()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    for message in messages:
        params = {
            "msisdn": message.to_number,
            "to": message.from_number,
            "network-code": "12345",
            "messageId": message.message_id,
            "price": message.price,
            "status": status,
            "scts": datetime.now(UTC).strftime("%y%m%d%H%M"),
            "err-code": "0" if status == "delivered" else "1",
            "message-timestamp": stamp,
        }
        if message.client_ref:
            params["client-ref"] = message.client_ref
        try:
            answered = _send(transport, STATUS_PATH, params, secret=secret, method=method)
        except PlayerError as error:
            play.error, play.exit_code = str(error), error.code
            return play
        play.steps.append(SmsStep(STATUS_PATH, f"delivery receipt: {status}", params, answered))
        if not 200 <= answered < 300:
            play.error, play.exit_code = f"{STATUS_PATH} answered HTTP {answered}", 1
            return play
    return play
