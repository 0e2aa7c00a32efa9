"""Marketplace hooks: a signed POST the answer path waits for (intercept, out of session).

A hook is signed exactly like a callback (``X-Signature-Timestamp``, ``X-Signature``
over ``timestamp + "." + body``, both secrets for a day after a rotation) and carries the
same envelope ``{id, type, created_at, data}``; unlike a callback it is answered at
once: the product waits at most ``HOOK_TIMEOUT`` in all, reads at most
``HOOK_MAX_RESPONSE_BYTES`` of the reply, never follows a redirect and never reaches a
private address (``proxy.safe_http.post_bounded``, whose connections are kept and reused
across requests). ``hook_call`` never raises for anything the far end does: it says what
happened, and the caller of it decides (``webhooks.call_control``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from proxy.callbacks import envelope_body, signature_header
from proxy.models import Service
from proxy.safe_http import OutboundFailure, post_bounded

HOOK_INTERCEPT = "call.intercept"
HOOK_OUT_OF_SESSION = "call.out_of_session"
USER_AGENT = "masked-calling-hooks/1"


@dataclass(frozen=True)
class HookExchange:
    """How one hook went: ``status`` and ``body`` of the reply, or ``failure`` (why there is none)."""

    event: str
    status: int | None
    body: bytes
    failure: str
    elapsed_ms: int

    @property
    def reason(self) -> str:
        """What the far end did, for logs and the call's record (never the reply's content)."""
        if self.failure:
            return self.failure
        if self.status is not None and 300 <= self.status < 400:
            return f"redirect refused (HTTP {self.status})"
        return f"HTTP {self.status}"


def hook_call(*, service: Service, url: str, event: str, data: dict[str, Any]) -> HookExchange:
    """POST ``event`` with ``data`` to ``url`` for ``service``, signed, and wait for the reply."""
    now = timezone.now()
    envelope_id, body = envelope_body(event, data, now=now)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        "X-Callback-Event": event,
        "X-Callback-Id": envelope_id,
        "X-Signature-Timestamp": str(timestamp),
    }
    signature = signature_header(service=service, timestamp=timestamp, body=body, now=now)
    if signature is not None:
        headers["X-Signature"] = signature
    started = time.perf_counter()
    try:
        response = post_bounded(
            url,
            body=body,
            headers=headers,
            timeout=settings.HOOK_TIMEOUT,
            max_bytes=settings.HOOK_MAX_RESPONSE_BYTES,
        )
    except OutboundFailure as exc:
        return HookExchange(event, None, b"", str(exc), _ms_since(started))
    return HookExchange(event, response.status, response.body, "", _ms_since(started))


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
