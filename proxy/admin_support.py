"""Helpers shared by the console's admin modules: masking, number search, read-only pages."""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from unfold.decorators import display

from proxy.models import Call
from proxy.phone import InvalidNumber, from_webhook, mask, normalize
from virtual_numbers.models import VirtualNumber

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
    "done": "success",
    "not_in_progress": "info",
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


def on_action_page(request: HttpRequest) -> bool:
    """Whether the request is for a detail action's own URL (as opposed to a page showing its button)."""
    match = getattr(request, "resolver_match", None)
    return bool(match and match.url_name and match.url_name.rsplit("_", 1)[-1] in {"one", "extend"})


def with_pool_flags(queryset: QuerySet[Call]) -> QuerySet[Call]:
    """Mark which ends of each call are our own pool numbers, which need no masking."""
    return queryset.annotate(
        from_is_pool=Exists(VirtualNumber.objects.filter(number=OuterRef("from_number"))),
        to_is_pool=Exists(VirtualNumber.objects.filter(number=OuterRef("to_number"))),
    )


def call_end(raw: str, *, is_pool: bool) -> str:
    """A call's from/to for display: pool numbers in full, people's numbers masked."""
    digits = from_webhook(raw) or raw
    return f"+{digits}" if is_pool else mask(digits)


class CallEndsMixin:
    """``masked_from`` and ``masked_to`` columns for admin pages of calls (with_pool_flags rows)."""

    @display(description="From")
    def masked_from(self, obj: Call) -> str:
        return call_end(obj.from_number, is_pool=getattr(obj, "from_is_pool", False))

    @display(description="To")
    def masked_to(self, obj: Call) -> str:
        return call_end(obj.to_number, is_pool=getattr(obj, "to_is_pool", False))
