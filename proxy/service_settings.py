"""A service's own settings, changed by the marketplace over the API or by staff in the admin.

Both ways go through here, so both keep the same rules: callback and hook URLs are https
(http only while ``CALLBACK_ALLOW_PRIVATE_NETWORKS`` is on, for local development) and
pass the address checks every callback gets (``proxy.safe_http``). The callback secret
is never shown again once made: a rotation keeps the previous one, which signs beside
the new one for a day (``proxy.callbacks.signature_header``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from proxy.errors import InvalidInput
from proxy.models import Service
from proxy.safe_http import UnsafeCallbackUrl, callback_url_check

logger = logging.getLogger(__name__)

URL_FIELDS = ("callback_url", "intercept_url", "out_of_session_url")
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def service_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback or hook URL, or None when it can (or is empty: none)."""
    if not url:
        return None
    parts = urlsplit(url)
    allow_private = bool(settings.CALLBACK_ALLOW_PRIVATE_NETWORKS)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        return "Give an https URL."
    try:
        callback_url_check(url)
    except UnsafeCallbackUrl as exc:
        return f"This URL cannot be called: {exc}."
    return None


def service_urls_check(changes: Mapping[str, Any]) -> None:
    """Raise InvalidInput naming each callback or hook URL in ``changes`` that breaks the rules."""
    errors = {
        field: [problem]
        for field in URL_FIELDS
        if field in changes and (problem := service_url_problem(str(changes[field] or ""))) is not None
    }
    if errors:
        raise InvalidInput(errors)


def service_update(*, service: Service, changes: Mapping[str, Any]) -> Service:
    """Change ``service``'s settings (model field names to values, already of the right types).

    Raises InvalidInput for a callback or hook URL that breaks the rules; nothing is
    written then.
    """
    service_urls_check(changes)
    if changes.get("callback_url") and not service.callback_secret:
        # Unsigned callbacks would let anyone who learns the URL forge events.
        raise InvalidInput({"callback_url": ["Make a signing secret first: POST /api/v1/service/callback-secret."]})
    if not changes:
        return service
    for field, value in changes.items():
        setattr(service, field, value)
    service.save(update_fields=[*changes, "updated_at"])
    logger.info("service %s changed: %s", service.slug, ", ".join(sorted(changes)))
    return service


def callback_secret_rotate(*, service: Service, now: datetime | None = None) -> str:
    """Make ``service`` a new callback secret and return it (it is not shown again).

    The one it replaces keeps signing callbacks and hooks beside it for a day, so the
    marketplace can switch without missing one.
    """
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    callback_secret_replace(service, secret, previous=service.callback_secret, now=now)
    service.save(
        update_fields=["callback_secret", "callback_secret_previous", "callback_secret_rotated_at", "updated_at"]
    )
    logger.info("service %s: callback secret rotated", service.slug)
    return secret


def callback_secret_replace(service: Service, secret: str, *, previous: str, now: datetime | None = None) -> None:
    """Give ``service`` (in memory; the caller saves) the callback secret ``secret``. The one it
    replaces, ``previous``, keeps signing beside it for a day (proxy.callbacks.signature_header)."""
    if previous and previous != secret:
        service.callback_secret_previous = previous
        service.callback_secret_rotated_at = now or timezone.now()
    service.callback_secret = secret
