"""API keys: ``Authorization: Bearer <key>``, one service per key, only hashes stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from proxy import selectors
from proxy.models import ApiKey, Service

KEY_PREFIX = "mk_"
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, service: Service, name: str = "") -> tuple[ApiKey, str]:
    """Issue a new key for ``service``. Returns the row and the key, which is never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey.objects.create(service=service, name=name, prefix=key[:10], key_hash=hash_key(key))
    return row, key


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request as a service; ``request.auth`` is the service."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Service] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <API key>'.")
        row = selectors.api_key_for_hash(key_hash=hash_key(key.strip()))
        if row is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        now = timezone.now()
        if row.last_used_at is None or row.last_used_at < now - LAST_USED_PRECISION:
            # At most one write a minute per key: staff see which keys are alive, requests stay reads.
            ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
        return (None, row.service)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsService(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Service)
