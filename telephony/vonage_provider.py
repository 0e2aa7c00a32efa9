"""The provider on Vonage's official SDK (``vonage`` 4.x). The only module that imports it
(with ``proxy.ncco``, which builds NCCOs from its action models).

Choices, and why:
- Auth: the application JWT (``VONAGE_APPLICATION_ID`` + ``VONAGE_PRIVATE_KEY``, a PEM or a
  path; PKCS#1 keys are converted to the PKCS#8 the SDK insists on) for Voice; key and
  secret (Basic auth) for SMS, Number Insight and Numbers. The signature secret is never
  given to the SDK: with one, its SMS signing covers fields it then does not send.
- Timeouts: the SDK has none by default; ``VONAGE_HTTP_TIMEOUT`` (whole seconds, the SDK
  takes an int) always applies. Its transport retries are off (``max_retries=0``):
  retrying is the caller's business (Celery tasks with backoff), and a permanent error
  must never be retried behind its back.
- Hosts: ``VONAGE_API_HOST`` / ``VONAGE_REST_HOST`` aim it elsewhere (the sandbox in tests).
- Errors: every SDK or transport exception becomes ``ProviderError`` with ``permanent`` set
  by ``telephony.failures``; SDK response objects become the product's dataclasses.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError, InvalidAuthError, JWTGenerationError
from vonage_number_insight import BasicInsightRequest, StandardInsightRequest
from vonage_number_insight.errors import NumberInsightError
from vonage_numbers import (
    ListOwnedNumbersFilter,
    NumberParams,
    SearchAvailableNumbersFilter,
    UpdateNumberParams,
)
from vonage_numbers.errors import NumbersError
from vonage_sms import SmsMessage
from vonage_sms.errors import SmsError
from vonage_voice.models import AudioStreamOptions, TtsStreamOptions

from telephony.failures import http_failure, insight_failure, sms_failure, transport_failure
from telephony.provider import (
    AvailableNumber,
    CallInfo,
    InsightResult,
    OwnedNumber,
    Provider,
    ProviderError,
    SmsResult,
)
from telephony.text import needs_unicode

VONAGE_FILE_HOSTS = (".nexmo.com", ".vonage.com")


def load_private_key(value: str) -> str:
    """The PKCS#8 PEM for ``value``: a PEM (``\\n`` escapes allowed) or a path to one."""
    text = value.strip()
    if "-----BEGIN" not in text:
        text = Path(text).expanduser().read_text()
    text = text.replace("\\n", "\n").strip() + "\n"
    if "BEGIN PRIVATE KEY" in text:
        return text
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(text.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


class VonageProvider(Provider):
    name = "vonage"

    def __init__(
        self,
        *,
        api_key: str = "",
        api_secret: str = "",
        application_id: str = "",
        private_key: str = "",
        api_host: str = "",
        rest_host: str = "",
        timeout: float = 10.0,
    ) -> None:
        auth_kwargs: dict[str, str] = {}
        if api_key:
            auth_kwargs.update(api_key=api_key, api_secret=api_secret)
        if application_id and private_key:
            auth_kwargs.update(application_id=application_id, private_key=load_private_key(private_key))
        options: dict[str, Any] = {"timeout": max(1, math.ceil(timeout)), "max_retries": 0}
        if api_host:
            options["api_host"] = api_host
        if rest_host:
            options["rest_host"] = rest_host
        self.application_id = application_id
        self.has_api_key = bool(api_key and api_secret)
        self.timeout = timeout
        self._auth = Auth(**auth_kwargs)
        self._client = Vonage(self._auth, HttpClientOptions(**options))
        self._api_host = self._client.http_client.api_host

    # --- helpers ----------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        if fn.__self__ is not self._client.voice and not self.has_api_key:
            # The SDK would send "Basic None:None" and let Vonage say 401.
            raise ProviderError(f"{what}: VONAGE_API_KEY / VONAGE_API_SECRET are not configured", permanent=True)
        try:
            return fn(*args)
        except HttpRequestError as error:
            detail = ""
            try:
                body = error.response.json()
                detail = body.get("detail") or body.get("title") or body.get("error-code-label") or ""
            except ValueError:
                detail = error.response.text[:200]
            raise http_failure(error.response.status_code, str(detail), what=what) from error
        except requests.RequestException as error:
            raise transport_failure(error, what=what) from error
        except ValidationError as error:
            raise ProviderError(f"{what}: invalid request ({error.error_count()} errors)", permanent=True) from error
        except (JWTGenerationError, InvalidAuthError) as error:
            raise ProviderError(f"{what}: credentials missing for this API ({error})", permanent=True) from error

    def _last_json(self) -> dict:
        response = self._client.http_client.last_response
        try:
            return response.json() if response is not None else {}
        except ValueError:
            return {}

    # --- Messages ---------------------------------------------------------------------------
    def send_sms(
        self, *, from_number: str, to_number: str, text: str, client_ref: str = "", callback_url: str = ""
    ) -> SmsResult:
        try:
            message = SmsMessage(
                to=to_number,
                from_=from_number,
                text=text,
                type="unicode" if needs_unicode(text) else "text",
                client_ref=client_ref or None,
                callback=callback_url or None,
            )
        except ValidationError as error:
            raise ProviderError(
                f"SMS not sent: invalid message ({error.error_count()} errors)", permanent=True
            ) from error
        try:
            response = self._call("SMS", self._client.sms.send, message)
        except SmsError as error:
            messages = self._last_json().get("messages") or [{}]
            failed = next((m for m in messages if m.get("status") != "0"), messages[0])
            raise sms_failure(str(failed.get("status", "")), str(failed.get("error-text", ""))) from error
        first = response.messages[0]
        total = sum((_decimal(m.message_price) or Decimal(0) for m in response.messages), Decimal(0))
        return SmsResult(
            message_id=first.message_id or "",
            to=first.to or to_number,
            price=total if any(m.message_price for m in response.messages) else None,
            network=first.network or "",
        )

    # --- Number Insight ---------------------------------------------------------------------
    def number_insight(self, number: str, *, level: str = "standard") -> InsightResult:
        try:
            if level == "basic":
                request: Any = BasicInsightRequest(number=number)
                fn = self._client.number_insight.get_basic_info
            else:
                request = StandardInsightRequest(number=number)
                fn = self._client.number_insight.get_standard_info
        except ValidationError:
            return InsightResult(number=number, valid=False)
        try:
            response = self._call("Number Insight", fn, request)
        except NumberInsightError as error:
            body = self._last_json()
            status = int(body.get("status", -1))
            if status == 3:
                return InsightResult(number=number, valid=False, raw=body)
            raise insight_failure(status, str(body.get("status_message", ""))) from error
        raw = response.model_dump(exclude_none=True)
        carrier = getattr(response, "current_carrier", None)
        ported = getattr(response, "ported", None)
        return InsightResult(
            number=response.international_format_number or number,
            valid=True,
            country=response.country_code or "",
            number_type=(carrier.network_type or "") if carrier else "",
            carrier=(carrier.name or "") if carrier else "",
            ported=None if ported in (None, "unknown", "assumed_not_ported", "assumed_ported") else ported == "ported",
            raw=raw,
        )

    # --- Numbers ------------------------------------------------------------------------------
    def _numbers(self, what: str, fn: Any, params: Any) -> None:
        try:
            self._call(what, fn, params)
        except NumbersError as error:
            body = self._last_json()
            code = str(body.get("error-code", ""))
            raise ProviderError(f"{what}: {body.get('error-code-label', error)}", permanent=True, code=code) from error

    def search_numbers(
        self,
        *,
        country: str,
        number_type: str = "",
        features: tuple[str, ...] = ("VOICE",),
        pattern: str = "",
        size: int = 10,
    ) -> list[AvailableNumber]:
        filters: dict[str, Any] = {"country": country.upper(), "size": size}
        if number_type:
            filters["type"] = number_type
        if features:
            filters["features"] = ",".join(features)
        if pattern:
            filters.update(pattern=pattern, search_pattern=1)
        try:
            search = SearchAvailableNumbersFilter(**filters)
        except (ValidationError, NumbersError) as error:
            raise ProviderError(f"Number search: invalid filter: {error}", permanent=True) from error
        numbers, _count, _next = self._call("Number search", self._client.numbers.search_available_numbers, search)
        return [
            AvailableNumber(
                number=n.msisdn or "",
                country=n.country or country.upper(),
                number_type=n.type or "",
                features=tuple(n.features or ()),
                monthly_cost=_decimal(n.cost),
            )
            for n in numbers
        ]

    def buy_number(self, *, country: str, number: str) -> None:
        self._numbers("Buy number", self._client.numbers.buy_number, self._number_params(country, number))

    def cancel_number(self, *, country: str, number: str) -> None:
        self._numbers("Cancel number", self._client.numbers.cancel_number, self._number_params(country, number))

    def link_number(self, *, country: str, number: str, app_id: str = "") -> None:
        app = app_id or self.application_id
        if not app:
            raise ProviderError("Link number: no application id configured", permanent=True)
        params = UpdateNumberParams(country=country.upper(), msisdn=number, app_id=app)
        self._numbers("Link number", self._client.numbers.update_number, params)

    def _number_params(self, country: str, number: str) -> NumberParams:
        try:
            return NumberParams(country=country.upper(), msisdn=number)
        except ValidationError as error:
            raise ProviderError(f"Not a number Vonage accepts: {error.error_count()} errors", permanent=True) from error

    def list_owned_numbers(self) -> list[OwnedNumber]:
        owned: list[OwnedNumber] = []
        index: int | None = 1
        while index is not None:
            page, _count, index = self._call(
                "List numbers",
                self._client.numbers.list_owned_numbers,
                ListOwnedNumbersFilter(size=100, index=index),
            )
            owned.extend(
                OwnedNumber(
                    number=n.msisdn or "",
                    country=n.country or "",
                    number_type=n.type or "",
                    features=tuple(n.features or ()),
                    app_id=n.app_id or "",
                )
                for n in page
            )
            if not page:
                break
        return owned

    # --- Voice call control -----------------------------------------------------------------
    def get_call(self, uuid: str) -> CallInfo:
        call = self._call("Get call", self._client.voice.get_call, uuid)
        return CallInfo(
            uuid=call.uuid,
            conversation_uuid=call.conversation_uuid,
            status=call.status,
            direction=call.direction,
            from_number=getattr(call.from_, "number", "") or getattr(call.from_, "uri", ""),
            to_number=getattr(call.to, "number", "") or getattr(call.to, "uri", ""),
            duration=int(call.duration) if call.duration not in (None, "") else None,
            price=_decimal(call.price),
        )

    def hangup_call(self, uuid: str) -> None:
        self._call("Hang up", self._client.voice.hangup, uuid)

    def transfer_call(self, uuid: str, *, ncco: list[dict[str, Any]]) -> None:
        from proxy.ncco import InvalidNcco, ncco_validate

        try:
            actions = ncco_validate(ncco)
        except InvalidNcco as error:
            raise ProviderError(f"Transfer: {error}", permanent=True) from error
        self._call("Transfer", self._client.voice.transfer_call_ncco, uuid, actions)

    def talk_into_call(self, uuid: str, *, text: str, language: str = "en-US") -> None:
        try:
            options = TtsStreamOptions(text=text, language=language)
        except ValidationError as error:
            raise ProviderError(
                f"Talk: invalid text or language ({error.error_count()} errors)", permanent=True
            ) from error
        self._call("Talk", self._client.voice.play_tts_into_call, uuid, options)

    def stream_into_call(self, uuid: str, *, url: str) -> None:
        self._call("Stream", self._client.voice.play_audio_into_call, uuid, AudioStreamOptions(stream_url=[url]))

    def download_recording(self, url: str) -> bytes:
        # The application JWT must only ever go to Vonage (or the host we were aimed at).
        host = urlsplit(url).netloc
        if urlsplit(url).scheme != "https" or not (host == self._api_host or host.endswith(VONAGE_FILE_HOSTS)):
            raise ProviderError(f"Refusing to send credentials to {host}", permanent=True)
        headers = {"Authorization": self._auth.create_jwt_auth_string().decode()}
        try:
            response = requests.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as error:
            raise transport_failure(error, what="Download recording") from error
        if response.status_code != 200:
            raise http_failure(response.status_code, response.reason or "", what="Download recording")
        return response.content
