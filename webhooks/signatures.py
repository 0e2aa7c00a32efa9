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

import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from django.conf import settings
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


def verify_token(*, token: str, body: bytes, secret: str) -> dict:
    """Return the claims or raise SignatureError."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["iat"], "verify_iat": False, "verify_exp": True},
        )
    except jwt.PyJWTError as exc:
        raise SignatureError(f"invalid token: {exc.__class__.__name__}") from exc
    iat = claims.get("iat")
    if (
        not isinstance(iat, int | float)
        or isinstance(iat, bool)
        or not math.isfinite(iat)
        or abs(time.time() - iat) > MAX_CLOCK_SKEW
    ):
        raise SignatureError("token iat outside the allowed window")
    expected = claims.get("payload_hash")
    if expected is not None:
        actual = hashlib.sha256(body).hexdigest().encode()
        if not isinstance(expected, str) or not hmac.compare_digest(expected.lower().encode(), actual):
            raise SignatureError("body does not match payload_hash")
    return claims


def verify_voice_webhook(request: HttpRequest) -> None:
    """Raise SignatureError unless the request is signed with VONAGE_SIGNATURE_SECRET.

    With no secret configured (the sandbox, development) every request passes.
    """
    secret = settings.VONAGE_SIGNATURE_SECRET
    if not secret:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError("missing bearer token")
    verify_token(token=token.strip(), body=request.body, secret=secret)


# --- SMS ---------------------------------------------------------------------------------------

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")


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
