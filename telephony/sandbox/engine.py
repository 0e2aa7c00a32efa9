"""The sandbox's Vonage: state logic behind the REST paths the product calls.

One entry point, ``sandbox_handle(request)``, takes a ``SandboxRequest`` (method, path,
query/form parameters, JSON body, Authorization header) and returns a ``Reply`` in
Vonage's own shapes: strings where Vonage sends strings, its status codes, its error
bodies (see VONAGE.md in the design notes). The HTTPS server (``telephony.sandbox.server``)
and the in-process provider (``telephony.sandbox.provider``) both go through it, so
they cannot disagree.

Failure injection (``failure_inject``) makes the next N requests to a path prefix fail
the way Vonage fails: ``throttle`` (SMS and Number Insight status 1, else HTTP 429),
``5xx`` (HTTP 500), ``timeout`` (no answer until the client gives up) or ``permanent``
(a refusal retrying cannot fix: SMS status 7, Number Insight status 4, Numbers 420 on
buy/cancel/update and 401 on reads, Voice 400).

State lives in the telephony tables (``telephony.models``) so every process sees one
account. The functions here take keyword arguments and are safe to call from tests.
"""

from __future__ import annotations

import base64
import math
import re
import uuid as uuidlib
from typing import Any

import jwt
import phonenumbers
from django.db import transaction
from django.db.models import F
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from telephony.models import SandboxCall, SandboxFailure, SandboxMessage, SandboxNumber, SandboxRecording
from telephony.sandbox.inventory import for_sale_lookup, inventory
from telephony.sandbox.voice import call_create_from_api, call_route, calls_list, recording_file

# Re-exported: callers (the call player, tests) reach the sandbox through this module.
from telephony.sandbox.voice import call_record as call_record
from telephony.sandbox.voice import recording_create as recording_create
from telephony.sandbox.voice import transcript_create as transcript_create
from telephony.sandbox.wire import Reply, SandboxRequest, int_param, voice_error
from telephony.text import needs_unicode

# --- Failure injection ---------------------------------------------------------------------


def failure_inject(*, path: str, mode: str, count: int = 1, hold_seconds: float = 5.0) -> SandboxFailure:
    """Make the next ``count`` requests whose path starts with ``path`` fail with ``mode``."""
    if mode not in SandboxFailure.Mode.values:
        raise ValueError(f"unknown failure mode {mode!r}")
    return SandboxFailure.objects.create(path=path, mode=mode, remaining=count, hold_seconds=hold_seconds)


def failure_take(*, path: str) -> SandboxFailure | None:
    """Consume one injected failure for ``path``, oldest first, or None."""
    with transaction.atomic():
        for failure in SandboxFailure.objects.select_for_update().filter(remaining__gt=0):
            if path.startswith(failure.path):
                SandboxFailure.objects.filter(pk=failure.pk).update(remaining=F("remaining") - 1)
                return failure
    return None


def sandbox_reset() -> None:
    """Forget everything: owned numbers, messages, calls, recordings, injected failures."""
    for model in (SandboxNumber, SandboxMessage, SandboxCall, SandboxRecording, SandboxFailure):
        model.objects.all().delete()


def _failure_reply(path: str, failure: SandboxFailure) -> Reply:
    mode = failure.mode
    if mode == SandboxFailure.Mode.TIMEOUT:
        return Reply(504, {"title": "Gateway Timeout"}, hold_seconds=max(failure.hold_seconds, 0.1))
    if mode == SandboxFailure.Mode.SERVER_ERROR:
        if path.startswith("/v1/"):
            return voice_error(500, "internal-error", "Internal Error", "An internal error occurred.")
        return _numbers_reply(500, "internal error")
    if path.startswith("/sms/"):
        if mode == SandboxFailure.Mode.THROTTLE:
            return _sms_error("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry")
        return _sms_error("7", "Number barred.")
    if path.startswith("/ni/"):
        if mode == SandboxFailure.Mode.THROTTLE:
            return Reply(200, {"status": 1, "status_message": "Throttled"})
        return _insight_bad_credentials()
    if mode == SandboxFailure.Mode.THROTTLE:
        if path.startswith("/v1/"):
            return voice_error(429, "throttled", "Throttled", "You have exceeded your rate limit.")
        return _numbers_reply(429, "too many requests")
    if path.startswith("/v1/"):
        return voice_error(400, "bad-request", "Bad Request", "The request was refused.")
    if path in ("/number/buy", "/number/cancel", "/number/update"):
        return _method_failed()
    return _numbers_reply(401, "authentication failed")


# --- Dispatch ------------------------------------------------------------------------------

_CALL = re.compile(r"^/v1/calls/(?P<uuid>[A-Za-z0-9\-]+)(?P<sub>/talk|/stream|/dtmf)?/?$")
_FILE = re.compile(r"^/v1/files/(?P<id>[0-9a-fA-F\-]{32,36})/?$")


def sandbox_handle(request: SandboxRequest) -> Reply:
    """Answer one Vonage REST request the way Vonage would."""
    path, method = request.path, request.method.upper()
    auth_error = _check_auth(request)
    if auth_error is not None:
        return auth_error
    failure = failure_take(path=path)
    if failure is not None:
        return _failure_reply(path, failure)
    params = request.params
    routes = {
        ("POST", "/sms/json"): lambda: sms_send(params=params),
        ("GET", "/ni/basic/json"): lambda: insight(level="basic", number=params.get("number", "")),
        ("GET", "/ni/standard/json"): lambda: insight(level="standard", number=params.get("number", "")),
        ("GET", "/number/search"): lambda: numbers_search(params=params),
        ("POST", "/number/buy"): lambda: number_buy(country=params.get("country", ""), msisdn=params.get("msisdn", "")),
        ("POST", "/number/cancel"): lambda: number_cancel(
            country=params.get("country", ""), msisdn=params.get("msisdn", "")
        ),
        ("POST", "/number/update"): lambda: number_update(params=params),
        ("GET", "/account/numbers"): lambda: numbers_owned(params=params),
        ("GET", "/v1/calls"): lambda: calls_list(params=params),
        ("POST", "/v1/calls"): lambda: call_create_from_api(body=request.json or {}),
    }
    route = routes.get((method, path.rstrip("/") or "/"))
    if route is not None:
        return route()
    match = _CALL.match(path)
    if match:
        return call_route(method, match["uuid"], match["sub"] or "", request.json or {})
    match = _FILE.match(path)
    if match and method == "GET":
        return recording_file(recording_id=match["id"])
    return voice_error(404, "not-found", "Not Found", f"{method} {path} is not a Vonage path the sandbox knows.")


def _check_auth(request: SandboxRequest) -> Reply | None:
    auth = request.authorization
    if request.path.startswith("/v1/"):
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        try:
            claims = jwt.decode(token, options={"verify_signature": False}) if token else {}
        except jwt.PyJWTError:
            claims = {}
        if not claims.get("application_id"):
            return voice_error(401, "unauthorized", "Unauthorized", "You did not provide correct credentials.")
        return None
    key, _, secret = _b64(auth.removeprefix("Basic ")).partition(":") if auth.startswith("Basic ") else ("", "", "")
    has_basic = key not in ("", "None") and secret not in ("", "None")
    has_params = bool(request.params.get("api_key")) and bool(request.params.get("api_secret"))
    if has_basic or has_params:
        return None
    if request.path.startswith("/sms/"):
        return _sms_error("4", "Bad Credentials")
    if request.path.startswith("/ni/"):
        return _insight_bad_credentials()
    return _numbers_reply(401, "authentication failed")


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text.strip()).decode()
    except ValueError:
        return ""


# --- SMS ------------------------------------------------------------------------------------


def _sms_error(status: str, text: str) -> Reply:
    return Reply(200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]})


def _sms_parts(text: str, message_type: str) -> int:
    if message_type == "unicode":
        return 1 if len(text) <= 70 else math.ceil(len(text) / 67)
    return 1 if len(text) <= 160 else math.ceil(len(text) / 153)


def sms_send(*, params: dict[str, str]) -> Reply:
    """``POST /sms/json``: store the message (one row per part) and answer with Vonage's receipt."""
    sender, to, text = params.get("from", ""), params.get("to", ""), params.get("text", "")
    for name, value in (("from", sender), ("to", to), ("text", text)):
        if not value:
            return _sms_error("2", f"Missing {name} param")
    if not to.isdigit() or not _is_valid(to):
        return _sms_error("3", "Invalid to address")
    message_type = params.get("type") or "text"
    if message_type == "text" and needs_unicode(text):
        # Vonage would send it, garbled; the sandbox refuses so the product's encoding bug shows.
        return _sms_error("6", "Invalid message: text needs type=unicode")
    parts = _sms_parts(text, message_type)
    messages = []
    with transaction.atomic():
        for part in range(1, parts + 1):
            row = SandboxMessage.objects.create(
                message_id=uuidlib.uuid4().hex[:16].upper(),
                from_number=sender,
                to_number=to,
                text=text,
                message_type=message_type,
                client_ref=params.get("client-ref", ""),
                callback=params.get("callback", ""),
                part=part,
            )
            entry = {
                "to": to,
                "message-id": row.message_id,
                "status": "0",
                "remaining-balance": "10.00000000",
                "message-price": row.price,
                "network": "12345",
            }
            if row.client_ref:
                entry["client-ref"] = row.client_ref
            messages.append(entry)
    return Reply(200, {"message-count": str(parts), "messages": messages})


def sms_find(*, client_ref: str) -> list[SandboxMessage]:
    """The parts of the messages accepted with ``client_ref``, first part first (no Vonage path:
    the sandbox's own answer to "was it sent?")."""
    return list(SandboxMessage.objects.filter(client_ref=client_ref).order_by("created_at", "id"))


# --- Number Insight -------------------------------------------------------------------------

_NETWORK_TYPES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "landline",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "mobile",
    PhoneNumberType.TOLL_FREE: "landline_tollfree",
    PhoneNumberType.PREMIUM_RATE: "landline_premium",
    PhoneNumberType.VOIP: "virtual",
    PhoneNumberType.PAGER: "pager",
}


def _parse(digits: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None


def _is_valid(digits: str) -> bool:
    parsed = _parse(digits)
    return parsed is not None and phonenumbers.is_valid_number(parsed)


def insight(*, level: str, number: str) -> Reply:
    """``GET /ni/{basic,standard}/json``: answers from phonenumbers' metadata, deterministic."""
    parsed = _parse(number) if number.isdigit() else None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        return Reply(
            200, {"status": 3, "status_message": f"Invalid request :: Not valid number format detected [ {number} ]"}
        )
    region = phonenumbers.region_code_for_number(parsed) or ""
    from phonenumbers import geocoder

    body: dict[str, Any] = {
        "status": 0,
        "status_message": "Success",
        "request_id": str(uuidlib.uuid4()),
        "international_format_number": number,
        "national_format_number": phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL),
        "country_code": region,
        "country_name": geocoder.country_name_for_number(parsed, "en"),
        "country_prefix": str(parsed.country_code),
    }
    if level == "standard":
        # A number the sandbox account rents is a virtual number, as Vonage reports its own.
        network_type = _NETWORK_TYPES.get(phonenumbers.number_type(parsed), "unknown")
        if SandboxNumber.objects.filter(msisdn=number).exists():
            network_type = "virtual"
        carrier = {"network_code": "12345", "name": "Sandbox Telecom", "country": region, "network_type": network_type}
        body.update(
            {
                "request_price": "0.00500000",
                "remaining_balance": "10.00000000",
                "current_carrier": carrier,
                "original_carrier": carrier,
                "ported": "not_ported",
            }
        )
    return Reply(200, body)


# --- Numbers --------------------------------------------------------------------------------


def _insight_bad_credentials() -> Reply:
    return Reply(200, {"status": 4, "status_message": "Invalid credentials"})


def _numbers_reply(code: int, label: str) -> Reply:
    """The Numbers and Account APIs' answer shape: the HTTP status again as error-code."""
    return Reply(code, {"error-code": str(code), "error-code-label": label})


def _method_failed() -> Reply:
    return _numbers_reply(420, "method failed")


def _pattern_filter(numbers: list[dict], params: dict[str, str]) -> list[dict]:
    pattern = params.get("pattern", "")
    if not pattern:
        return numbers
    mode = params.get("search_pattern", "1")
    tests = {"0": str.startswith, "2": str.endswith}
    test = tests.get(mode, lambda msisdn, p: p in msisdn)
    return [n for n in numbers if test(n["msisdn"], pattern)]


def _page(numbers: list[dict], params: dict[str, str]) -> Reply:
    size = int_param(params.get("size"), 10, 1, 100)
    index = int_param(params.get("index"), 1, 1, 10**6)
    page = numbers[(index - 1) * size : index * size]
    body: dict[str, Any] = {"count": len(numbers)}
    if page:
        body["numbers"] = page
    return Reply(200, body)


def numbers_search(*, params: dict[str, str]) -> Reply:
    """``GET /number/search``: the country's inventory minus owned numbers, filtered and paged."""
    owned = set(SandboxNumber.objects.values_list("msisdn", flat=True))
    wanted_type = params.get("type", "")
    wanted_features = {f for f in params.get("features", "").split(",") if f}
    numbers = [
        n.as_vonage()
        for n in inventory(params.get("country", ""))
        if n.msisdn not in owned
        and (not wanted_type or n.number_type == wanted_type)
        and wanted_features <= set(n.features)
    ]
    return _page(_pattern_filter(numbers, params), params)


def number_buy(*, country: str, msisdn: str) -> Reply:
    """``POST /number/buy``: 420 unless the number is for sale in that country and not yet owned."""
    offer = for_sale_lookup(msisdn)
    if offer is None or offer.country != country.upper():
        return _method_failed()
    _, created = SandboxNumber.objects.get_or_create(
        msisdn=msisdn,
        defaults={
            "country": offer.country,
            "number_type": offer.number_type,
            "features": list(offer.features),
            "cost": offer.cost,
        },
    )
    if not created:
        return _method_failed()
    return _numbers_reply(200, "success")


def number_cancel(*, country: str, msisdn: str) -> Reply:
    """``POST /number/cancel``: 420 unless the account rents that number."""
    deleted, _ = SandboxNumber.objects.filter(msisdn=msisdn, country=country.upper()).delete()
    if not deleted:
        return _method_failed()
    return _numbers_reply(200, "success")


def number_update(*, params: dict[str, str]) -> Reply:
    """``POST /number/update``: link an owned number to an application (``app_id``)."""
    number = SandboxNumber.objects.filter(msisdn=params.get("msisdn", ""), country=params.get("country", "").upper())
    if not number.exists():
        return _method_failed()
    changes = {}
    if "app_id" in params:
        changes["app_id"] = params["app_id"]
    if "moHttpUrl" in params:
        changes["mo_http_url"] = params["moHttpUrl"]
    number.update(**changes)
    return _numbers_reply(200, "success")


def _owned_as_vonage(number: SandboxNumber) -> dict:
    body = {
        "country": number.country,
        "msisdn": number.msisdn,
        "type": number.number_type,
        "features": number.features,
    }
    if number.mo_http_url:
        body["moHttpUrl"] = number.mo_http_url
    if number.app_id:
        body.update(
            {
                "app_id": number.app_id,
                "voiceCallbackType": "app",
                "voiceCallbackValue": number.app_id,
                "messagesCallbackType": "app",
                "messagesCallbackValue": number.app_id,
            }
        )
    return body


def numbers_owned(*, params: dict[str, str]) -> Reply:
    """``GET /account/numbers``: what the account rents, paged (Vonage's default size is 10)."""
    numbers = SandboxNumber.objects.all()
    if params.get("country"):
        numbers = numbers.filter(country=params["country"].upper())
    if params.get("application_id"):
        numbers = numbers.filter(app_id=params["application_id"])
    listed = _pattern_filter([_owned_as_vonage(n) for n in numbers], params)
    return _page(listed, params)
