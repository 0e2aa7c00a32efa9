"""Helpers shared by the console's admin modules: masking, number search, read-only pages."""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from proxy.phone import InvalidNumber, from_webhook, normalize

STATUS_LABELS = {
    "Open": "success",
    "Closed": "info",
    "Expired": "warning",
    "completed": "success",
    "answered": "success",
    "ringing": "info",
    "started": "info",
    "busy": "warning",
    "unanswered": "warning",
    "timeout": "warning",
    "cancelled": "warning",
    "rejected": "danger",
    "failed": "danger",
    "queued": "info",
    "sent": "info",
    "delivered": "success",
    "pending": "info",
    "downloaded": "success",
}
_PHONE_CHARS = set("+0123456789 -().")


def numbers_from_search(term: str) -> list[str]:
    """E.164 digits a search term may mean when it is a phone number typed in full.

    Bare digits are read both as international (as Vonage writes them) and as national
    in the default country, so "2015550102" finds the US number as well.
    """
    term = term.strip()
    if sum(ch.isdigit() for ch in term) < 6 or not set(term) <= _PHONE_CHARS:
        return []
    found = []
    for hint in (None, settings.PROXY_DEFAULT_COUNTRY):
        with contextlib.suppress(InvalidNumber):
            found.append(normalize(term, country=hint, default_country=settings.PROXY_DEFAULT_COUNTRY))
    raw = from_webhook(term)
    if raw:
        found.append(raw)
    return list(dict.fromkeys(found))


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
