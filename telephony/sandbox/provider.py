"""The sandbox as a provider, in-process: no HTTP, same engine, same Vonage-shaped answers.

Used when no Vonage credentials are configured. Each method builds the request the SDK
would send, lets the engine answer it (state, injected failures and all), and reads the
answer the way ``VonageProvider`` reads Vonage's, with the same failure classification
(``telephony.failures``). An injected timeout fails at once as a retryable error
instead of holding the caller.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from telephony.failures import http_failure, insight_failure, sms_failure
from telephony.ncco import InvalidNcco, ncco_validate
from telephony.provider import (
    AvailableNumber,
    CallInfo,
    InsightResult,
    OwnedNumber,
    Provider,
    ProviderError,
    SmsResult,
    VoiceWebhookUrls,
    Writable,
    file_url_trusted,
)
from telephony.sandbox.engine import sandbox_handle, sms_find
from telephony.sandbox.wire import Reply, SandboxRequest
from telephony.text import needs_unicode

SANDBOX_APPLICATION_ID = "sandbox-application"
_BASIC = "Basic c2FuZGJveDpzYW5kYm94"  # sandbox:sandbox
# An unsigned JWT with an application_id claim: the sandbox checks its presence only.
_BEARER = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhcHBsaWNhdGlvbl9pZCI6InNhbmRib3gtYXBwbGljYXRpb24ifQ."


class SandboxProvider(Provider):
    name = "sandbox"

    def __init__(self, *, application_id: str = SANDBOX_APPLICATION_ID) -> None:
        self.application_id = application_id

    def _send(self, what: str, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Reply:
        auth = _BEARER if path.startswith("/v1/") else _BASIC
        clean = {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}
        reply = sandbox_handle(SandboxRequest(method=method, path=path, params=clean, json=json, authorization=auth))
        if reply.is_timeout:
            raise ProviderError(f"{what}: timed out", permanent=False, code="transport")
        if reply.status >= 400:
            body = reply.body if isinstance(reply.body, dict) else {}
            detail = body.get("detail") or body.get("title") or body.get("error-code-label") or ""
            raise http_failure(reply.status, str(detail), what=what)
        return reply

    # --- Messages ---------------------------------------------------------------------------
    def send_sms(
        self, *, from_number: str, to_number: str, text: str, client_ref: str = "", callback_url: str = ""
    ) -> SmsResult:
        params = {
            "from": from_number,
            "to": to_number,
            "text": text,
            "type": "unicode" if needs_unicode(text) else "text",
            "client-ref": client_ref,
            "callback": callback_url,
        }
        body = self._send("SMS", "POST", "/sms/json", params=params).body
        messages = body.get("messages") or [{}]
        failed = next((m for m in messages if m.get("status") != "0"), None)
        if failed is not None:
            raise sms_failure(str(failed.get("status", "")), str(failed.get("error-text", "")))
        first = messages[0]
        return SmsResult(
            message_id=first["message-id"],
            to=first.get("to", to_number),
            price=sum((Decimal(m["message-price"]) for m in messages), Decimal(0)),
            network=first.get("network", ""),
        )

    can_look_up_sms = True

    def sms_sent_with_ref(self, client_ref: str) -> SmsResult | None:
        """The sandbox keeps every message it accepted, so it can always tell."""
        parts = sms_find(client_ref=client_ref) if client_ref else []
        if not parts:
            return None
        return SmsResult(
            message_id=parts[0].message_id,
            to=parts[0].to_number,
            price=sum((Decimal(part.price) for part in parts), Decimal(0)),
        )

    # --- Number Insight ---------------------------------------------------------------------
    def number_insight(self, number: str, *, level: str = "standard") -> InsightResult:
        path = "/ni/basic/json" if level == "basic" else "/ni/standard/json"
        body = self._send("Number Insight", "GET", path, params={"number": number}).body
        status = int(body.get("status", -1))
        if status == 3:
            return InsightResult(number=number, valid=False, raw=body)
        if status != 0:
            raise insight_failure(status, str(body.get("status_message", "")))
        carrier = body.get("current_carrier") or {}
        ported = body.get("ported")
        return InsightResult(
            number=body.get("international_format_number", number),
            valid=True,
            country=body.get("country_code", ""),
            number_type=carrier.get("network_type", ""),
            carrier=carrier.get("name", ""),
            ported=None if ported in (None, "unknown", "assumed_not_ported", "assumed_ported") else ported == "ported",
            raw=body,
        )

    # --- Numbers ------------------------------------------------------------------------------
    def search_numbers(
        self,
        *,
        country: str,
        number_type: str = "",
        features: tuple[str, ...] = ("VOICE",),
        pattern: str = "",
        size: int = 10,
    ) -> list[AvailableNumber]:
        params = {
            "country": country.upper(),
            "type": number_type,
            "features": ",".join(features),
            "pattern": pattern,
            "search_pattern": 1 if pattern else None,
            "size": size,
        }
        body = self._send("Number search", "GET", "/number/search", params=params).body
        return [
            AvailableNumber(
                number=n["msisdn"],
                country=n["country"],
                number_type=n["type"],
                features=tuple(n["features"]),
                monthly_cost=Decimal(n["cost"]),
            )
            for n in body.get("numbers", [])
        ]

    def buy_number(self, *, country: str, number: str) -> None:
        self._send("Buy number", "POST", "/number/buy", params={"country": country.upper(), "msisdn": number})

    def cancel_number(self, *, country: str, number: str) -> None:
        self._send("Cancel number", "POST", "/number/cancel", params={"country": country.upper(), "msisdn": number})

    def link_number(self, *, country: str, number: str, app_id: str = "") -> None:
        params = {"country": country.upper(), "msisdn": number, "app_id": app_id or self.application_id}
        self._send("Link number", "POST", "/number/update", params=params)

    def voice_webhooks_set(self, urls: VoiceWebhookUrls) -> None:
        # The sandbox calls whatever URL it is told per call (simulate_call --url): nothing to keep.
        self.voice_webhooks = urls

    def list_owned_numbers(self) -> list[OwnedNumber]:
        owned: list[OwnedNumber] = []
        index = 1
        while True:
            body = self._send("List numbers", "GET", "/account/numbers", params={"size": 100, "index": index}).body
            page = body.get("numbers", [])
            owned.extend(
                OwnedNumber(
                    number=n["msisdn"],
                    country=n["country"],
                    number_type=n["type"],
                    features=tuple(n["features"]),
                    app_id=n.get("app_id", ""),
                )
                for n in page
            )
            if not page or len(owned) >= body["count"]:
                return owned
            index += 1

    # --- Voice call control -----------------------------------------------------------------
    def get_call(self, uuid: str) -> CallInfo:
        body = self._send("Get call", "GET", f"/v1/calls/{uuid}").body
        return CallInfo(
            uuid=body["uuid"],
            conversation_uuid=body["conversation_uuid"],
            status=body["status"],
            direction=body["direction"],
            from_number=body["from"].get("number", ""),
            to_number=body["to"].get("number", ""),
            duration=int(body["duration"]) if body.get("duration") else None,
            price=Decimal(body["price"]) if body.get("price") else None,
        )

    def hangup_call(self, uuid: str) -> None:
        self._send("Hang up", "PUT", f"/v1/calls/{uuid}", json={"action": "hangup"})

    def transfer_call(self, uuid: str, *, ncco: list[dict[str, Any]]) -> None:
        try:
            ncco_validate(ncco)
        except InvalidNcco as error:
            raise ProviderError(f"Transfer: {error}", permanent=True) from error
        body = {"action": "transfer", "destination": {"type": "ncco", "ncco": ncco}}
        self._send("Transfer", "PUT", f"/v1/calls/{uuid}", json=body)

    def talk_into_call(self, uuid: str, *, text: str, language: str = "en-US") -> None:
        self._send("Talk", "PUT", f"/v1/calls/{uuid}/talk", json={"text": text, "language": language})

    def stream_into_call(self, uuid: str, *, url: str) -> None:
        self._send("Stream", "PUT", f"/v1/calls/{uuid}/stream", json={"stream_url": [url]})

    def file_url_trusted(self, url: str) -> bool:
        from django.conf import settings

        return file_url_trusted(url, aimed_host=settings.VONAGE_API_HOST)

    def download_file(self, url: str, into: Writable, *, max_bytes: int, max_seconds: float) -> int:
        if not self.file_url_trusted(url):
            host = urlsplit(url).hostname or url[:60]
            raise ProviderError(f"Refusing to fetch a file from {host}", permanent=True, code="untrusted-host")
        reply = self._send("Download file", "GET", urlsplit(url).path)
        if not isinstance(reply.body, bytes):
            raise ProviderError("Download file: not a file", permanent=True)
        if len(reply.body) > max_bytes:
            raise ProviderError(f"Download file: larger than {max_bytes} bytes", permanent=True, code="too-large")
        into.write(reply.body)
        return len(reply.body)
