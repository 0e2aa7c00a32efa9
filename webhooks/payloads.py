"""Validated accessors for what Vonage sends: never index a payload directly in a view."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.http import HttpRequest
from django.utils.dateparse import parse_datetime

from proxy.parsers import loads_lenient, loads_strict, storable
from proxy.phone import from_webhook
from telephony.values import vonage_decimal

TERMINAL_STATUSES = frozenset({"completed", "busy", "cancelled", "unanswered", "rejected", "failed", "timeout"})
# Before a terminal status, a tie on timestamps goes to the further status.
PROGRESS_RANK = {"started": 0, "ringing": 1, "answered": 2, "disconnected": 3}
CALL_STATUSES = TERMINAL_STATUSES | PROGRESS_RANK.keys()
# A synchronous connect whose leg ends like this may answer with a new NCCO.
NCCO_REPLACING_STATUSES = frozenset({"unanswered", "busy", "rejected", "timeout", "failed"})
FALLBACK_ONLY_FIELDS = ("reason", "original_request")


def request_fields(request: HttpRequest) -> dict[str, Any]:
    """A webhook's fields as sent: query parameters for GET, the JSON object or the form
    fields for POST (an empty POST body: its query parameters).

    Raises ValueError for a body that claims to be JSON and is not a JSON object.
    """
    if request.method == "GET":
        return query_fields(request)
    body = request.body
    if not body:
        return {k: v for k, v in request.POST.items()} or query_fields(request)
    content_type = request.content_type or ""
    if "json" in content_type or body[:1] in (b"{", b"["):
        value = loads_strict(body)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value
    return {k: v for k, v in request.POST.items()}


_TOO_MANY_FIELDS = "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."


def query_fields(request: HttpRequest) -> dict[str, Any]:
    """``request.GET`` as a dict (a repeated name keeps its last value), read exactly as
    Django's QueryDict reads a query string, without building one: that was a tenth of the
    answer webhook's CPU (issue 17). Raises TooManyFieldsSent past
    DATA_UPLOAD_MAX_NUMBER_FIELDS, as ``request.GET`` does."""
    environ = getattr(request, "environ", None)
    if environ is None or "GET" in request.__dict__:
        # Not WSGI, or already read (and perhaps changed): Django's own.
        return {k: v for k, v in request.GET.items()}
    raw = get_bytes_from_wsgi(environ, "QUERY_STRING", "")
    encoding = request.encoding or settings.DEFAULT_CHARSET
    try:
        query = raw.decode(encoding)
    except UnicodeDecodeError:
        query = raw.decode("iso-8859-1")
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    if "%" not in query and "+" not in query:
        # Nothing to decode (Vonage's usual answer request: digits and ids): what parse_qsl
        # gives, without its unquoting of every name and value (issue 17).
        fields = query.split("&")
        if limit is not None and len(fields) > limit:
            raise TooManyFieldsSent(_TOO_MANY_FIELDS)
        return dict(field.partition("=")[::2] for field in fields if field)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, encoding=encoding, max_num_fields=limit)
    except ValueError as exc:
        raise TooManyFieldsSent(_TOO_MANY_FIELDS) from exc
    return dict(pairs)


def request_payload(request: HttpRequest) -> dict[str, Any]:
    """A voice webhook's fields, made storable (no NUL characters or lone surrogates).

    Garbage gives ``{"_raw": ...}`` rather than an error: voice webhooks keep what they got.
    """
    try:
        fields = request_fields(request)
    except ValueError:
        # One unreadable value (NaN, a lone surrogate, a 5,000-digit number) must not cost
        # a known caller their call: read what can be read, the garbage as null.
        body = request.body
        value = loads_lenient(body)
        if isinstance(value, dict):
            fields = value
        else:
            fields = {"_raw": value if value is not None else body[:10000].decode("utf-8", "replace")}
    return storable(fields)


def sms_params(request: HttpRequest) -> dict[str, str]:
    """An SMS callback's parameters as strings, as Vonage signs them (JSON values that are
    not strings are signed as their JSON text; nulls are left out).

    Raises ValueError (or UnicodeDecodeError) for a malformed body.
    """
    return {
        str(k): v if isinstance(v, str) else json.dumps(v) for k, v in request_fields(request).items() if v is not None
    }


# --- SMS callbacks ------------------------------------------------------------------------------

# What a redacted raw event keeps of its payload: the rows stay, the personal data goes.
REDACTED_PAYLOAD = {"redacted": True}
# Not part of what an SMS callback says; left out of its duplicate check.
SMS_TRANSPORT_FIELDS = ("sig", "timestamp", "nonce")
INBOUND_SMS_KEY = ("messageId",)
# More parts than this is not a concatenated SMS Vonage would deliver: read each part alone.
MAX_PARTS = 50


def sms_event_key(params: dict[str, Any], *, source: str, key_fields: tuple[str, ...]) -> str:
    """The duplicate check of a raw SMS callback: the same key means the same callback.

    ``key_fields`` name it (an inbound SMS: its ``messageId``); without any of them, its
    whole content does.
    """
    content = {k: v for k, v in params.items() if k not in SMS_TRANSPORT_FIELDS}
    identity = [source] + [str(content.get(field, "")) for field in key_fields]
    if not any(identity[1:]):
        identity.append(json.dumps(content, sort_keys=True))
    return hashlib.sha256("\x1f".join(identity).encode()).hexdigest()


def inbound_sms_event_keys(message_ids: list[str]) -> list[str]:
    """The raw events' duplicate-check keys of inbound SMS with these Vonage ids."""
    return [
        sms_event_key({"messageId": message_id}, source="sms-inbound", key_fields=INBOUND_SMS_KEY)
        for message_id in message_ids
        if message_id
    ]


@dataclass(frozen=True)
class InboundSms:
    """An inbound SMS as Vonage sent it, read defensively: nothing here raises.

    ``sender``/``to``: E.164 digits, or None when the field is missing or not a number.
    ``text``: None when absent (binary messages carry ``data`` and ``udh`` instead).
    ``encoding``: "binary", "unicode" or "text". ``concat``: (ref, total, part) for one
    part of a concatenated message, None for a whole one (or concat fields that make no sense).
    """

    message_id: str
    sender_raw: str
    sender: str | None
    to_raw: str
    to: str | None
    text: str | None
    encoding: str
    concat: tuple[str, int, int] | None


def _small_int(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 4:
        return int(value.strip())
    return None


def inbound_sms(params: dict[str, str]) -> InboundSms:
    """Read an inbound SMS's fields (``params`` as ``sms_params`` returns them)."""
    kind = (params.get("type") or "").strip().lower()
    encoding = kind if kind in ("binary", "unicode") else "text"
    raw_text = params.get("text")
    concat = None
    if (params.get("concat") or "").strip().lower() == "true":
        ref = (params.get("concat-ref") or "").strip()[:20]
        total = _small_int(params.get("concat-total"))
        part = _small_int(params.get("concat-part"))
        if ref and total is not None and part is not None and 1 <= part <= total <= MAX_PARTS and total > 1:
            concat = (ref, total, part)
    return InboundSms(
        message_id=(params.get("messageId") or "")[:64],
        sender_raw=(params.get("msisdn") or "")[:64],
        sender=from_webhook(params.get("msisdn")),
        to_raw=(params.get("to") or "")[:64],
        to=from_webhook(params.get("to")),
        text=raw_text if isinstance(raw_text, str) else None,
        encoding=encoding,
        concat=concat,
    )


def text(payload: dict[str, Any], key: str, limit: int = 64) -> str:
    value = payload.get(key)
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)[:limit]
    return ""


def timestamp(payload: dict[str, Any], key: str = "timestamp") -> datetime | None:
    value = payload.get(key)
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # Stored and compared in UTC: year 9999 at -05:00 or year 1 at +05:00 has no UTC
        # datetime, and kept as is it would fail every later write and read of the call.
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


# The call log's money columns: DecimalField(max_digits=14, decimal_places=8).
MONEY_DIGITS, MONEY_PLACES = 14, 8
# Seconds and bytes go into PositiveIntegerField columns.
MAX_WHOLE = 2**31 - 1


def decimal(payload: dict[str, Any], key: str) -> Decimal | None:
    """A money value that fits the call log's columns, else None."""
    return vonage_decimal(payload.get(key), max_digits=MONEY_DIGITS, places=MONEY_PLACES)


def whole_seconds(payload: dict[str, Any], key: str) -> int | None:
    value = vonage_decimal(payload.get(key))
    if value is None or value < 0 or value > MAX_WHOLE:
        return None
    return int(value)


@dataclass(frozen=True)
class Event:
    payload: dict[str, Any]
    uuid: str
    conversation_uuid: str
    status: str
    kind: str
    timestamp: datetime | None
    dedup_key: str


def event_from_payload(payload: dict[str, Any]) -> Event:
    status = text(payload, "status", 20).lower()
    if payload.get("recording_url"):
        kind = "record"
    elif payload.get("transcription_url") or text(payload, "type", 20) == "transcription":
        kind = "transcription"
    elif "dtmf" in payload or "speech" in payload:
        kind = "input"
    elif status in CALL_STATUSES:
        kind = "status"
    elif status in ("human", "machine"):
        kind = "machine"
    elif status.startswith("transfer") or "conversation_uuid_to" in payload:
        kind = "transfer"
    else:
        kind = "other"
    # The same event delivered through the fallback URL carries two extra fields.
    canonical = {k: v for k, v in payload.items() if k not in FALLBACK_ONLY_FIELDS}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()
    return Event(
        payload=payload,
        uuid=text(payload, "uuid") or text(payload, "call_uuid"),
        conversation_uuid=text(payload, "conversation_uuid"),
        status=status,
        kind=kind,
        timestamp=timestamp(payload),
        dedup_key=digest,
    )


def input_payload_redacted(payload: dict[str, Any]) -> dict[str, Any]:
    """An input event as it may be stored: the keys pressed (a PIN, or a guess at one) are
    replaced by how many there were, and any words recognised by "[redacted]"."""
    redacted = dict(payload)
    dtmf = payload.get("dtmf")
    if isinstance(dtmf, dict) and "digits" in dtmf:
        digits = dtmf.get("digits")
        count = len(digits) if isinstance(digits, str) else 0
        redacted["dtmf"] = {**dtmf, "digits": f"[{count} keys redacted]" if count else ""}
    speech = payload.get("speech")
    if isinstance(speech, dict) and isinstance(speech.get("results"), list):
        results = [{**r, "text": "[redacted]"} if isinstance(r, dict) else "[redacted]" for r in speech["results"]]
        redacted["speech"] = {**speech, "results": results}
    return redacted
