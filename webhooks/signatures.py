"""Vonage's signed voice webhooks: an HS256 JWT in ``Authorization: Bearer``.

Claims: ``iat``, ``jti``, ``iss``, ``api_key``, ``application_id`` and, for requests with
a body, ``payload_hash`` (SHA-256 hex of the raw body). We check the signature, the
``iat`` window and the body hash; the SDK's own helper checks only the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import uuid

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
