"""Helpers shared by the console's admin modules: masking, number search, read-only pages."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from unfold.admin import ModelAdmin
from unfold.decorators import display

from proxy.models import Call, Message
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
    "held": "warning",
    "received": "info",
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


def with_pool_flags(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """Mark which ends of each call (or text: any rows with ``from_number`` and ``to_number``)
    are our own pool numbers, which need no masking."""
    return queryset.annotate(
        from_is_pool=Exists(VirtualNumber.objects.filter(number=OuterRef("from_number"))),
        to_is_pool=Exists(VirtualNumber.objects.filter(number=OuterRef("to_number"))),
    )


def call_end(raw: str, *, is_pool: bool) -> str:
    """A call's from/to for display: pool numbers in full, people's numbers masked."""
    digits = from_webhook(raw) or raw
    return f"+{digits}" if is_pool else mask(digits)


class CallEndsMixin:
    """``masked_from`` and ``masked_to`` columns for admin pages of calls or texts (with_pool_flags rows)."""

    @display(description="From")
    def masked_from(self, obj: Call | Message) -> str:
        return call_end(obj.from_number, is_pool=getattr(obj, "from_is_pool", False))

    @display(description="To")
    def masked_to(self, obj: Call | Message) -> str:
        return call_end(obj.to_number, is_pool=getattr(obj, "to_is_pool", False))


_SEARCH_SESSION_KEY = "admin-private-searches"
_SEARCH_MARK = "~"  # q=~<token>: a search kept in the session
_SEARCHES_KEPT = 20


class PrivateSearchMixin:
    """Searches by real number without the number in any URL.

    The changelist's search form POSTs (templates/admin/proxy/<model>/search_form.html);
    a term that reads as a phone number is kept in the session and the list is shown at
    ``?q=~<token>``, so pagination and filter links carry the token, never the number.
    Other terms are redirected to the ordinary ``?q=``. Subclasses search in
    ``search_by_term`` with the term the token stands for (never an empty one); a token
    this session does not know finds nothing. Each model needs
    ``templates/admin/proxy/<model>/search_form.html`` (the console's private form).
    """

    def search_by_term(self, request: HttpRequest, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        raise NotImplementedError

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = self.private_search_term(request, search_term.strip())
        if term is None:
            return queryset.none(), False
        if not term:
            return queryset, False
        return self.search_by_term(request, queryset, term), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and SEARCH_VAR in request.POST and "action" not in request.POST:
            term = request.POST.get(SEARCH_VAR, "").strip()
            params = request.GET.copy()
            for name in (SEARCH_VAR, PAGE_VAR):
                params.pop(name, None)
            if term and numbers_from_search(term):
                token = secrets.token_urlsafe(12)
                saved = dict(list(request.session.get(_SEARCH_SESSION_KEY, {}).items())[-(_SEARCHES_KEPT - 1) :])
                saved[token] = term
                request.session[_SEARCH_SESSION_KEY] = saved
                params[SEARCH_VAR] = _SEARCH_MARK + token
            elif term:
                params[SEARCH_VAR] = term
            return HttpResponseRedirect(f"{request.path}?{params.urlencode()}" if params else request.path)
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    @staticmethod
    def private_search_term(request: HttpRequest, term: str) -> str | None:
        """The term a ``~token`` stands for in this session (None when unknown: find nothing),
        else ``term``."""
        if term.startswith(_SEARCH_MARK):
            found = request.session.get(_SEARCH_SESSION_KEY, {}).get(term[len(_SEARCH_MARK) :])
            return found if isinstance(found, str) else None
        return term


class IndexedListMixin:
    """A changelist that stays cheap on a big table: it sorts only on ``sortable_by``
    (columns an index leads with) whatever ``?o=`` asks, and skips the second, unfiltered
    count of the whole table."""

    show_full_result_count = False
    sortable_by: tuple[str, ...] = ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> Any:
        base = super().get_changelist(request, **kwargs)  # type: ignore[misc]
        sortable = self.sortable_by

        class IndexedChangeList(base):  # type: ignore[misc,valid-type]
            def get_ordering_field(self, field_name: Any) -> Any:
                return super().get_ordering_field(field_name) if field_name in sortable else None

        return IndexedChangeList


# --- Outbox retries ------------------------------------------------------------------------------
def retry_each(model_admin: ModelAdmin, request: HttpRequest, rows: Iterable[Any], retry: Callable[[Any], bool]) -> int:
    """Start each failed row over; only the rows that did start over are written to the admin log."""
    retried = 0
    for row in rows:
        if retry(row):
            model_admin.log_change(request, row, "Retried by staff")
            retried += 1
    return retried


def report_retries(
    model_admin: ModelAdmin, request: HttpRequest, *, retried: int, selected: int, noun: str, why: str
) -> None:
    plural = "s" if noun != "SMS" else ""
    text = f"Retrying {retried} {noun}{plural if retried != 1 else ''}."
    skipped = selected - retried
    if skipped:
        text += f" {skipped} left as they were ({why})."
    model_admin.message_user(request, text, messages.SUCCESS if retried else messages.WARNING)
