"""API keys: issue, revoke, recognise. Only a key's SHA-256 is stored; the key is shown once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.utils import timezone

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


def api_key_use(*, key: str, now: datetime | None = None) -> ApiKey | None:
    """The live key ``key`` (its service attached), noting when it was last used; None when
    unknown, revoked or its service is off."""
    row = selectors.api_key_for_hash(key_hash=hash_key(key))
    if row is None:
        return None
    now = now or timezone.now()
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_PRECISION:
        # At most one write a minute per key: staff see which keys are alive, requests stay reads.
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
    return row
