"""Staff console: PIN calls, their tries and the callers locked out for guessing.

Registered from proxy/admin.py. Callers' numbers are shown masked; PINs never appear
(input events are stored with their keys redacted).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from unfold.admin import ModelAdmin
from unfold.decorators import display

from proxy.admin_support import PrivateSearchMixin, ReadOnlyMixin, numbers_from_search
from proxy.models import PinCall
from proxy.phone import mask

_OUTCOME_LABELS = {"Connected": "success", "Pending": "info", "Failed": "danger", "Ended": "warning"}
_OUTCOME_SHORT = {"connected": "Connected", "pending": "Pending", "failed": "Failed", "ended": "Ended"}


class LockedOutFilter(admin.SimpleListFilter):
    """Calls whose failure locked their caller out of PINs on the number, and still does."""

    title = "lockout"
    parameter_name = "locked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("now", "Caller locked out now"), ("ever", "Started a lockout")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[PinCall]) -> QuerySet[PinCall]:
        if self.value() == "now":
            return queryset.filter(locked_until__gt=timezone.now())
        if self.value() == "ever":
            return queryset.filter(locked_until__isnull=False)
        return queryset


@admin.register(PinCall)
class PinCallAdmin(PrivateSearchMixin, ReadOnlyMixin, ModelAdmin):
    list_display = (
        "created_at",
        "service",
        "dialled",
        "masked_caller",
        "outcome_label",
        "tries",
        "wrong_pins",
        "lockout",
    )
    list_filter = (LockedOutFilter, "outcome", "service", "created_at")
    search_fields = ("call_uuid",)
    search_help_text = "Call uuid, or the caller's or the dialled number typed in full."
    list_select_related = ("service",)
    date_hierarchy = "created_at"
    exclude = ("caller", "participant")
    readonly_fields = (
        "call_uuid",
        "service",
        "dialled",
        "masked_caller",
        "outcome",
        "tries",
        "wrong_pins",
        "failed_at",
        "locked_until",
        "created_at",
        "updated_at",
    )

    def search_by_term(self, request: HttpRequest, queryset: QuerySet[PinCall], term: str) -> QuerySet[PinCall]:
        digits = numbers_from_search(term)
        if digits:
            return queryset.filter(Q(caller__in=digits) | Q(proxy_number__in=digits))
        return queryset.filter(call_uuid=term)

    @display(description="Number dialled")
    def dialled(self, obj: PinCall) -> str:
        return f"+{obj.proxy_number}"

    @display(description="Caller")
    def masked_caller(self, obj: PinCall) -> str:
        return mask(obj.caller) or "withheld"

    @display(description="Outcome", label=_OUTCOME_LABELS)
    def outcome_label(self, obj: PinCall) -> str:
        return _OUTCOME_SHORT.get(obj.outcome, obj.outcome)

    @display(description="Locked out until")
    def lockout(self, obj: PinCall) -> str:
        if obj.locked_until is None:
            return ""
        state = "" if obj.locked_until > timezone.now() else " (over)"
        return f"{obj.locked_until:%Y-%m-%d %H:%M} UTC{state}"
