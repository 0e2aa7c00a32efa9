"""An example marketplace endpoint for the product's callbacks and hooks (standard library only).

Run it: ``CALLBACK_SECRETS=whsec_... python docs/examples/marketplace_receiver.py 8080`` and
set the service's callback, intercept and out-of-session URLs to it (https in production:
put it behind your TLS proxy). ``CALLBACK_SECRETS`` is the secret ``POST
/api/v1/service/callback-secret`` returned, and while you rotate, the previous one too,
comma-separated. Optional ``SUPPORT_NUMBER``: out-of-session callers are put through to it.

Every request is verified before anything else: a stale timestamp or a signature made
with none of your secrets gets 401 (and a hook that answers 401 falls back: the intercept
hook to the service's ``intercept_on_error``, the out-of-session hook to its message).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_AGE = 300  # seconds: an older timestamp is a replay


def verified(secrets: list[str], headers: Any, body: bytes, *, now: float | None = None) -> bool:
    """Whether ``X-Signature`` holds an HMAC-SHA256, with one of ``secrets``, of ``timestamp + "." + body``.

    After a rotation the product sends two signatures, comma-separated (new secret, then
    the old one) for 24 hours: either is enough, so rotate the secret, then update this
    list at your own pace.
    """
    timestamp = headers.get("X-Signature-Timestamp", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > MAX_AGE:
        return False
    signed = timestamp.encode() + b"." + body
    expected = ["sha256=" + hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets if s]
    given = [part.strip() for part in headers.get("X-Signature", "").split(",")]
    return any(hmac.compare_digest(g, e) for g in given for e in expected)


def intercept(data: dict[str, Any]) -> int:
    """``call.intercept``: 2xx connects, 403 blocks. Here: block orders flagged in their metadata."""
    if data["conversation"]["metadata"].get("calls_blocked"):
        return 403
    return 204


def out_of_session(data: dict[str, Any], support_number: str) -> dict[str, Any]:
    """``call.out_of_session``: what to do with a caller who has no open conversation on the number.

    ``data["from"]`` is the caller's number (None when withheld), ``data["to"]`` the proxy
    number dialled, ``data["conversation"]`` their latest conversation on it (or None).
    """
    latest = data["conversation"]
    if support_number and data["from"]:
        reference = f"support-{latest['external_id']}" if latest and latest["external_id"] else "support"
        return {
            "action": "open",
            "participant": {"number": support_number, "name": "Support"},
            "ttl": 900,
            "external_id": reference,
            "metadata": {"previous_conversation": latest["id"] if latest else None},
        }
    if latest is not None:
        return {"action": "talk", "text": "This order is over. Please write to us from the app."}
    return {"action": "talk", "text": "Sorry, this number is not in service."}


class Receiver(BaseHTTPRequestHandler):
    # Keep-alive: the product keeps its connections to hooks open between calls.
    protocol_version = "HTTP/1.1"
    secrets: list[str] = []
    support_number = ""
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verified(self.secrets, self.headers, body):
            self._reply(401)
            return
        event = json.loads(body)
        if event["type"] == "call.intercept":
            self._reply(intercept(event["data"]))
        elif event["type"] == "call.out_of_session":
            self._reply(200, out_of_session(event["data"], self.support_number))
        else:
            # A callback (conversation.*, call.*): the same event id on every retry, so
            # deduplicate on it; answer 2xx quickly and do the work elsewhere.
            self.received.append(event)
            self._reply(204)

    def _reply(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    Receiver.secrets = os.environ.get("CALLBACK_SECRETS", "").split(",")
    Receiver.support_number = os.environ.get("SUPPORT_NUMBER", "")
    ThreadingHTTPServer(("0.0.0.0", port), Receiver).serve_forever()  # noqa: S104 (an example server)


if __name__ == "__main__":
    main()
