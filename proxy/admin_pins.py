"""Staff console: PIN calls, their tries and the callers locked out for guessing.

Registered from proxy/admin.py. Callers' numbers are shown masked; PINs never appear
(input events are stored with their keys redacted).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from unfold.admin import ModelAdmin
from unfold.decorators import display

from proxy.admin_support import ReadOnlyMixin, numbers_from_search
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
class PinCallAdmin(ReadOnlyMixin, ModelAdmin):
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

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PinCall], search_term: str
    ) -> tuple[QuerySet[PinCall], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        digits = numbers_from_search(term)
        if digits:
            return queryset.filter(caller__in=digits) | queryset.filter(proxy_number__in=digits), False
        return queryset.filter(call_uuid=term), False

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
