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
  by ``telephony.failures``; SDK response objects become the product's dataclasses. An answer
  of an unexpected shape is a temporary ``ProviderError`` (code ``bad-answer``), never a bare
  exception.
- Error bodies: the SDK's SMS, Number Insight and Numbers wrappers raise without the body,
  and its ``last_response`` is shared by every thread using the client, so those APIs go
  through the SDK's HTTP client directly and are judged on their own answer.
- Files (recordings, transcripts): only fetched from Vonage's hosts (or the configured
  one), redirects followed by hand and only to those hosts, streamed into the caller's
  file a chunk at a time, refused past a size cap and a total time limit.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from pydantic import ValidationError
from vonage import Auth, HttpClientOptions, Vonage
from vonage_application import ApplicationConfig
from vonage_application.common import Capabilities, Voice, VoiceUrl, VoiceWebhooks
from vonage_http_client.errors import HttpRequestError, InvalidAuthError, JWTGenerationError
from vonage_number_insight import (
    BasicInsightRequest,
    BasicInsightResponse,
    StandardInsightRequest,
    StandardInsightResponse,
)
from vonage_numbers import (
    ListOwnedNumbersFilter,
    NumberParams,
    SearchAvailableNumbersFilter,
    UpdateNumberParams,
)
from vonage_numbers.errors import NumbersError
from vonage_sms import SmsMessage
from vonage_voice.models import AudioStreamOptions, TtsStreamOptions

from telephony.failures import http_failure, insight_failure, sms_failure, transport_failure
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
from telephony.text import needs_unicode
from telephony.values import vonage_decimal

FILE_CHUNK = 64 * 1024
MAX_FILE_REDIRECTS = 3
SMS_SENT = "0"
INSIGHT_ANSWERED = {0, 43, 44, 45}  # 43-45: answered without the live mobile lookup
INSIGHT_INVALID_NUMBER = 3


def _bad_answer(what: str, why: str) -> ProviderError:
    return ProviderError(f"{what}: unexpected answer from Vonage ({why})", permanent=False, code="bad-answer")


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
            raise http_failure(error.response.status_code, _error_detail(error.response), what=what) from error
        except requests.RequestException as error:
            raise transport_failure(error, what=what) from error
        except ValidationError as error:
            if error.title == getattr(fn, "__qualname__", None):
                raise ProviderError(
                    f"{what}: invalid request ({error.error_count()} errors)", permanent=True
                ) from error
            # Not our arguments: the SDK could not read Vonage's answer into its models.
            raise _bad_answer(what, f"{error.error_count()} fields unreadable") from error
        except (JWTGenerationError, InvalidAuthError) as error:
            raise ProviderError(f"{what}: credentials missing for this API ({error})", permanent=True) from error
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as error:
            # The SDK indexes Vonage's answers without looking; an odd body surfaces here.
            raise _bad_answer(what, type(error).__name__) from error

    def _rest(self, what: str, method: str, host: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One Basic-auth request through the SDK's HTTP client: this call's own answer, as a dict."""
        http = self._client.http_client
        if method == "POST":
            body = self._call(what, http.post, host, path, params, "basic", "form")
        else:
            body = self._call(what, http.get, host, path, params, "basic", "query_params")
        if not isinstance(body, dict):
            raise _bad_answer(what, "not a JSON object")
        return body

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
        body = self._rest(
            "SMS", "POST", self._client.http_client.rest_host, "/sms/json", message.model_dump(by_alias=True)
        )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _bad_answer("SMS", "no messages")
        statuses = [str(m.get("status", "")).strip() for m in messages]
        if "" in statuses:
            raise _bad_answer("SMS", "a message without a status")
        failed = next((m for m, status in zip(messages, statuses, strict=True) if status != SMS_SENT), None)
        if failed is not None:
            raise sms_failure(str(failed["status"]).strip(), str(failed.get("error-text", "")))
        first = messages[0]
        prices = [vonage_decimal(m.get("message-price")) for m in messages]
        return SmsResult(
            message_id=str(first.get("message-id") or ""),
            to=str(first.get("to") or to_number),
            price=sum((p or Decimal(0) for p in prices), Decimal(0)) if any(p is not None for p in prices) else None,
            network=str(first.get("network") or ""),
        )

    # --- Number Insight ---------------------------------------------------------------------
    def number_insight(self, number: str, *, level: str = "standard") -> InsightResult:
        model: Any = BasicInsightResponse if level == "basic" else StandardInsightResponse
        try:
            request: Any = (BasicInsightRequest if level == "basic" else StandardInsightRequest)(number=number)
        except ValidationError:
            return InsightResult(number=number, valid=False)
        path = "/ni/basic/json" if level == "basic" else "/ni/standard/json"
        body = self._rest(
            "Number Insight", "GET", self._client.http_client.api_host, path, request.model_dump(exclude_none=True)
        )
        try:
            status = int(body["status"])
        except (KeyError, TypeError, ValueError) as error:
            raise _bad_answer("Number Insight", "no status") from error
        if status == INSIGHT_INVALID_NUMBER:
            return InsightResult(number=number, valid=False, raw=body)
        if status not in INSIGHT_ANSWERED:
            raise insight_failure(status, str(body.get("status_message", "")))
        try:
            response = model(**body)
        except ValidationError as error:
            raise _bad_answer("Number Insight", f"{error.error_count()} fields unreadable") from error
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
    def _numbers(self, what: str, path: str, params: Any) -> None:
        body = self._rest(
            what, "POST", self._client.http_client.rest_host, path, params.model_dump(by_alias=True, exclude_none=True)
        )
        code = str(body.get("error-code", "")).strip()
        if not code:
            raise _bad_answer(what, "no error-code")
        if code != "200":
            raise ProviderError(f"{what}: {body.get('error-code-label') or code}", permanent=True, code=code)

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
                monthly_cost=vonage_decimal(n.cost),
            )
            for n in numbers
        ]

    def buy_number(self, *, country: str, number: str) -> None:
        self._numbers("Buy number", "/number/buy", self._number_params(country, number))

    def cancel_number(self, *, country: str, number: str) -> None:
        self._numbers("Cancel number", "/number/cancel", self._number_params(country, number))

    def link_number(self, *, country: str, number: str, app_id: str = "") -> None:
        app = app_id or self.application_id
        if not app:
            raise ProviderError("Link number: no application id configured", permanent=True)
        params = UpdateNumberParams(country=country.upper(), msisdn=number, app_id=app)
        self._numbers("Link number", "/number/update", params)

    def voice_webhooks_set(self, urls: VoiceWebhookUrls) -> None:
        if not self.application_id:
            raise ProviderError("Configure the application: VONAGE_APPLICATION_ID is not set", permanent=True)
        application = self._client.application
        current = self._call("Get application", application.get_application, self.application_id)
        capabilities = current.capabilities or Capabilities()
        voice = capabilities.voice or Voice()
        voice.webhooks = VoiceWebhooks(
            answer_url=VoiceUrl(address=urls.answer_url, http_method=urls.answer_method),
            event_url=VoiceUrl(address=urls.event_url, http_method=urls.event_method),
            fallback_answer_url=VoiceUrl(address=urls.fallback_url, http_method=urls.fallback_method),
        )
        voice.signed_callbacks = True
        capabilities.voice = voice
        config = ApplicationConfig(
            name=current.name, capabilities=capabilities, privacy=current.privacy, keys=current.keys
        )
        self._call("Update application", application.update_application, self.application_id, config)

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
            price=vonage_decimal(call.price),
        )

    def hangup_call(self, uuid: str) -> None:
        self._call("Hang up", self._client.voice.hangup, uuid)

    def transfer_call(self, uuid: str, *, ncco: list[dict[str, Any]]) -> None:
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
        try:
            options = AudioStreamOptions(stream_url=[url])
        except ValidationError as error:
            raise ProviderError(f"Stream: invalid audio URL ({error.error_count()} errors)", permanent=True) from error
        self._call("Stream", self._client.voice.play_audio_into_call, uuid, options)

    def file_url_trusted(self, url: str) -> bool:
        return file_url_trusted(url, aimed_host=self._api_host)

    def download_file(self, url: str, into: Writable, *, max_bytes: int, max_seconds: float) -> int:
        deadline = time.monotonic() + max_seconds
        for _ in range(MAX_FILE_REDIRECTS + 1):
            if not self.file_url_trusted(url):
                # The application JWT must only ever go to Vonage (or the host we were aimed at).
                host = urlsplit(url).hostname or url[:60]
                raise ProviderError(f"Refusing to fetch a file from {host}", permanent=True, code="untrusted-host")
            headers = {"Authorization": self._auth.create_jwt_auth_string().decode()}
            try:
                with requests.get(
                    url, headers=headers, timeout=self.timeout, stream=True, allow_redirects=False
                ) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status_code != 200:
                        raise http_failure(response.status_code, response.reason or "", what="Download file")
                    return _stream_into(response, into, max_bytes=max_bytes, deadline=deadline, limit=max_seconds)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                raise transport_failure(error, what="Download file") from error
        raise ProviderError("Download file: too many redirects", permanent=True, code="redirects")


def _stream_into(response: requests.Response, into: Writable, *, max_bytes: int, deadline: float, limit: float) -> int:
    """Copy the body into ``into`` one read at a time, checking the size cap and the deadline
    after each: ``read1`` returns as soon as any data arrives, so a trickle cannot hold the
    worker past its limit by more than one socket timeout."""
    too_big = ProviderError(f"Download file: larger than {max_bytes} bytes", permanent=True, code="too-large")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    written = 0
    while True:
        if time.monotonic() > deadline:
            raise ProviderError(f"Download file: not done within {limit:g} s", permanent=False, code="timeout")
        chunk = response.raw.read1(FILE_CHUNK, decode_content=True)
        if not chunk:
            return written
        written += len(chunk)
        if written > max_bytes:
            raise too_big
        into.write(chunk)


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return ""
    return str(body.get("detail") or body.get("title") or body.get("error-code-label") or "")[:200]
