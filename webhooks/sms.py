"""SMS webhooks: delivery receipts and inbound messages, signed Vonage's SMS way.

Vonage signs SMS callbacks with a ``sig`` parameter over the other parameters, sorted
by name, as ``&name=value`` (``&`` and ``=`` in values replaced by ``_``): an MD5 of that
string followed by the secret ("md5hash"), or an HMAC of it keyed with the secret
("md5", "sha1", "sha256", "sha512"). With ``VONAGE_SIGNATURE_SECRET`` set, a request
without a valid ``sig`` gets 401. Every accepted callback is kept as a raw event for
audit (``CallEvent`` with ``source`` "sms-status" or "sms-inbound"), once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from proxy.models import CallEvent
from proxy.notifications import notification_receipt_apply
from proxy.parsers import loads_strict, storable
from proxy.phone import mask

logger = logging.getLogger(__name__)

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
# Not part of what a receipt says; left out of the duplicate check.
_TRANSPORT_FIELDS = ("sig", "timestamp", "nonce")


class SmsSignatureError(Exception):
    pass


def sms_signature(params: Mapping[str, Any], *, secret: str, method: str = "md5hash") -> str:
    """The ``sig`` Vonage computes for ``params`` (which must not include ``sig``)."""
    if method not in SIGNATURE_METHODS:
        raise ValueError(f"unknown SMS signature method {method!r}")
    message = "".join(
        f"&{key}={str(params[key]).replace('&', '_').replace('=', '_')}" for key in sorted(params) if key != "sig"
    ).encode()
    if method == "md5hash":
        return hashlib.md5(message + secret.encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), message, getattr(hashlib, method)).hexdigest()


def sms_sign_params(
    params: Mapping[str, Any], *, secret: str, method: str = "md5hash", timestamp: int | None = None
) -> dict[str, str]:
    """``params`` plus ``timestamp``, ``nonce`` and ``sig``, as Vonage sends a signed callback."""
    signed = {key: str(value) for key, value in params.items() if key != "sig"}
    signed.setdefault("timestamp", str(timestamp if timestamp is not None else int(time.time())))
    signed.setdefault("nonce", secrets.token_hex(8))
    signed["sig"] = sms_signature(signed, secret=secret, method=method)
    return signed


def sms_verify(params: Mapping[str, Any], *, secret: str, method: str = "md5hash") -> None:
    """Raise SmsSignatureError unless ``params['sig']`` signs the other parameters.

    No freshness window on ``timestamp``: Vonage retries receipts for hours and applying
    one twice changes nothing, so a replay gains nothing.
    """
    given = str(params.get("sig") or "").lower()
    if not given:
        raise SmsSignatureError("missing sig")
    expected = sms_signature({k: v for k, v in params.items() if k != "sig"}, secret=secret, method=method)
    if not hmac.compare_digest(given, expected):
        raise SmsSignatureError("bad sig")


def _params(request: HttpRequest) -> dict[str, str]:
    """Vonage sends GET query, POST form or POST JSON depending on the account's settings."""
    if request.method == "GET":
        source: Mapping[str, Any] = request.GET
    elif request.content_type == "application/json":
        data = loads_strict(request.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if v is not None}
    else:
        source = request.POST
    return {key: source.get(key, "") for key in source}


def _accept(request: HttpRequest) -> dict[str, str] | HttpResponse:
    try:
        params = _params(request)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "Malformed body."}, status=400)
    secret = settings.VONAGE_SIGNATURE_SECRET
    if secret:
        try:
            sms_verify(params, secret=secret, method=settings.VONAGE_SIGNATURE_METHOD)
        except SmsSignatureError as exc:
            logger.warning("SMS webhook %s rejected: %s", request.path, exc)
            return JsonResponse({"detail": "Invalid signature."}, status=401)
    # Checked as received, stored as the database can hold it.
    return storable(params)


def _keep(params: dict[str, str], *, source: str, kind: str, key_fields: tuple[str, ...]) -> bool:
    """Store the raw callback once; False when it was seen before."""
    content = {k: v for k, v in params.items() if k not in _TRANSPORT_FIELDS}
    identity = [source] + [str(content.get(field, "")) for field in key_fields]
    if not any(identity[1:]):
        identity.append(json.dumps(content, sort_keys=True))
    dedup_key = hashlib.sha256("\x1f".join(identity).encode()).hexdigest()
    try:
        with transaction.atomic():
            CallEvent.objects.create(
                kind=kind,
                status=str(content.get("status", ""))[:20],
                source=source,
                dedup_key=dedup_key,
                payload=content,
            )
    except IntegrityError:
        return False
    return True


def signed_sms_webhook(view: Callable[[dict[str, str]], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Read and verify the callback (400 malformed, 401 bad signature), then ``view(params)``."""

    @csrf_exempt
    @require_http_methods(["GET", "POST"])
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        accepted = _accept(request)
        return accepted if isinstance(accepted, HttpResponse) else view(accepted)

    return wrapper


@signed_sms_webhook
def sms_status(params: dict[str, str]) -> HttpResponse:
    """A delivery receipt: update the SMS outbox row it is about (200 even when none matches)."""
    # One transaction: a receipt whose update fails is not remembered as seen, so
    # Vonage's retry applies it.
    with transaction.atomic():
        fresh = _keep(
            params,
            source="sms-status",
            kind="sms_receipt",
            key_fields=("messageId", "status", "err-code", "message-timestamp", "client-ref"),
        )
        if fresh and notification_receipt_apply(params=params) is None:
            logger.info("delivery receipt for an unknown message (%s)", mask(params.get("msisdn")))
    return HttpResponse(status=200)


@signed_sms_webhook
def sms_inbound(params: dict[str, str]) -> HttpResponse:
    """An SMS someone sent to a pool number: kept for audit, nothing else happens."""
    if _keep(params, source="sms-inbound", kind="sms_inbound", key_fields=("messageId",)):
        logger.info("inbound SMS from %s to %s", mask(params.get("msisdn")), params.get("to", ""))
    return HttpResponse(status=200)
