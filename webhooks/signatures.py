"""Vonage's webhook signatures.

Voice webhooks carry an HS256 JWT in ``Authorization: Bearer``. Claims: ``iat``,
``jti``, ``iss``, ``api_key``, ``application_id`` and, for requests with a body,
``payload_hash`` (SHA-256 hex of the raw body). We check the signature, the ``iat``
window and the body hash; the SDK's own helper checks only the signature.

SMS callbacks carry a ``sig`` parameter over the other parameters, sorted by name, as
``&name=value`` (``&`` and ``=`` in values replaced by ``_``): an MD5 of that string
followed by the secret ("md5hash"), or an HMAC of it keyed with the secret ("md5",
"sha1", "sha256", "sha512").
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest

MAX_CLOCK_SKEW = 300  # seconds either side of now


class SignatureError(Exception):
    """The request is not signed by Vonage with our secret."""


def sign_voice_webhook(
    *,
    body: bytes,
    secret: str,
    application_id: str = "sandbox",
    iat: int | None = None,
) -> str:
    """A token shaped like the ones Vonage sends (used by the sandbox and tests)."""
    claims = {
        "iat": int(time.time()) if iat is None else iat,
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": "sandbox",
        "application_id": application_id,
    }
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return jwt.encode(claims, secret, algorithm="HS256")


# Vonage's tokens are a few hundred characters; this bounds the work a stranger can ask for.
MAX_TOKEN_LENGTH = 4096
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def _b64url_decode(segment: bytes) -> bytes:
    """Unpadded base64url (RFC 7515), strictly: no padding, whitespace or other alphabet."""
    # translate() deletes the alphabet: anything left over is not base64url.
    if segment.translate(None, _B64URL_ALPHABET) or len(segment) % 4 == 1:
        raise SignatureError("token is not base64url")
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are not JSON (RFC 8259), whatever Python's json module accepts by default.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _json_object(segment: bytes, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(_b64url_decode(segment).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SignatureError(f"token {what} is not a JSON object") from exc
    if not isinstance(value, dict):
        raise SignatureError(f"token {what} is not a JSON object")
    return value


# Vonage sends the same header on every token: its verdict is kept rather than decoded again
# (issue 17). A header that is not JSON raises, and raising is never kept.
@functools.lru_cache(maxsize=64)
def _is_hs256_header(segment: bytes) -> bool:
    header = _json_object(segment, "header")
    return header.get("alg") == "HS256" and "crit" not in header


def _number(value: Any) -> int | float | None:
    """A JSON number claim as a finite int or float, else None (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def verify_token(
    *, token: str, body: bytes, secret: str, now: float | None = None, application_id: str = ""
) -> dict[str, Any]:
    """Return the claims of a voice webhook's token, or raise SignatureError.

    HS256 only, checked by hand rather than by PyJWT (a quarter of its cost, issue 17):
    the header's ``alg`` must be exactly "HS256" (so "none" and every other algorithm are
    refused) and carry no ``crit``; one HMAC-SHA256 of ``header.claims`` with ``secret``,
    compared in constant time with the signature in its canonical encoding; then the
    claims: ``iat`` a number within MAX_CLOCK_SKEW of ``now``; ``exp``/``nbf`` honoured and
    ``aud`` refused, as PyJWT's decode did; with a non-empty ``body``, ``payload_hash`` is
    required and must be its SHA-256 hex; with ``application_id``, the claim must equal it.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise SignatureError("malformed token")
    raw = token.encode("ascii")
    parts = raw.split(b".")
    if len(parts) != 3 or not all(parts):
        raise SignatureError("malformed token")
    head, claims_part, signature = parts
    if not _is_hs256_header(head):
        raise SignatureError("token is not HS256")
    expected = base64.urlsafe_b64encode(hmac.digest(secret.encode(), head + b"." + claims_part, "sha256"))
    if not hmac.compare_digest(expected.rstrip(b"="), signature):
        raise SignatureError("bad token signature")

    claims = _json_object(claims_part, "claims")
    now = time.time() if now is None else now
    iat = _number(claims.get("iat"))
    # Compared without turning iat into a float: an int of any size cannot overflow here.
    if iat is None or not (now - MAX_CLOCK_SKEW <= iat <= now + MAX_CLOCK_SKEW):
        raise SignatureError("token iat missing or outside the allowed window")
    if "exp" in claims and ((exp := _number(claims["exp"])) is None or exp <= now):
        raise SignatureError("token expired")
    if "nbf" in claims and ((nbf := _number(claims["nbf"])) is None or nbf > now):
        raise SignatureError("token not yet valid")
    if "aud" in claims:
        raise SignatureError("token has an audience")

    payload_hash = claims.get("payload_hash")
    if body or payload_hash is not None:
        if not isinstance(payload_hash, str) or not _HEX_DIGEST.fullmatch(payload_hash):
            raise SignatureError("request body without a valid payload_hash")
        actual = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(payload_hash.lower(), actual):
            raise SignatureError("body does not match payload_hash")
    if application_id and claims.get("application_id") != application_id:
        raise SignatureError("token is for another application")
    return claims


def verify_voice_webhook(request: HttpRequest) -> None:
    """Raise SignatureError unless the request is signed with VONAGE_SIGNATURE_SECRET
    (and, with VONAGE_APPLICATION_ID set, for that application).

    With no secret configured (development only: with DJANGO_DEBUG off the product
    refuses to load without one) every request passes.
    """
    secret = settings.VONAGE_SIGNATURE_SECRET
    if not secret:
        return
    # From META: request.headers would copy every header first, for this one.
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError("missing bearer token")
    verify_token(
        token=token.strip(), body=_request_body(request), secret=secret, application_id=settings.VONAGE_APPLICATION_ID
    )


def _request_body(request: HttpRequest) -> bytes:
    """``request.body``; for a WSGI request that declared no body (Vonage's GET answer
    request), its empty body without Django's reading machinery (issue 17). Django reads no
    more than CONTENT_LENGTH from a WSGI stream, so ``request.body`` would be empty too."""
    if "_body" not in request.__dict__ and not getattr(request, "_read_started", True):
        stream = getattr(request, "_stream", None)
        if isinstance(stream, LimitedStream) and stream.limit == 0:
            return b""
    return request.body


# --- SMS ---------------------------------------------------------------------------------------

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
# An MD5 to SHA-512 digest in hex.
_HEX_SIG = re.compile(r"[0-9a-fA-F]{32,128}")


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
    given = params.get("sig")
    if not given:
        raise SmsSignatureError("missing sig")
    # compare_digest refuses non-ASCII text with a TypeError: anything but hex is refused first.
    if not isinstance(given, str) or not _HEX_SIG.fullmatch(given):
        raise SmsSignatureError("malformed sig")
    try:
        expected = sms_signature({k: v for k, v in params.items() if k != "sig"}, secret=secret, method=method)
    except UnicodeEncodeError as exc:  # a lone surrogate: nothing Vonage could have signed
        raise SmsSignatureError("unsignable parameters") from exc
    if not hmac.compare_digest(given.lower(), expected):
        raise SmsSignatureError("bad sig")
