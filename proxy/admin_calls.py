"""Staff console: calls (event timeline, recordings), SMS and callback outboxes, staff and the admin log.

Registered from proxy/admin.py (recordings and transcripts: proxy/admin_recordings.py).
Real numbers are shown masked everywhere.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from proxy.admin_recordings import can_play
from proxy.admin_support import (
    STATUS_LABELS,
    CallEndsMixin,
    IndexedListMixin,
    PrivateSearchMixin,
    ReadOnlyMixin,
    numbers_from_search,
    report_retries,
    retry_each,
    with_pool_flags,
)
from proxy.callbacks import callback_retry
from proxy.models import (
    Call,
    CallbackDelivery,
    CallEvent,
    CallHangup,
    Notification,
    Recording,
)
from proxy.notifications import notification_retry
from proxy.phone import from_webhook, mask


# --- Calls and recordings ----------------------------------------------------------------------
def _masked_payload(payload: Any) -> Any:
    """An event payload with the people's numbers masked, for display."""
    if isinstance(payload, dict):
        return {
            k: (
                mask(from_webhook(v) or str(v))
                if k in {"from", "to", "number"} and isinstance(v, str | int)
                else _masked_payload(v)
            )
            for k, v in payload.items()
        }
    if isinstance(payload, list):
        return [_masked_payload(v) for v in payload]
    return payload


@admin.register(Call)
class CallAdmin(PrivateSearchMixin, IndexedListMixin, CallEndsMixin, ReadOnlyMixin, ModelAdmin):
    list_display = (
        "created_at",
        "short_uuid",
        "conversation_link",
        "service",
        "direction",
        "masked_from",
        "masked_to",
        "routed_by",
        "status_label",
        "hook_shown",
        "duration",
        "has_recording",
    )
    list_filter = ("status", "direction", "routed_by", "hook", "hook_outcome", "service", "created_at")
    search_fields = ("uuid",)
    search_help_text = "Call uuid, Vonage conversation uuid, conversation id, or a number typed in full."
    list_select_related = ("service", "conversation")
    # Indexed (call_created); a date hierarchy would scan the table for its dates.
    sortable_by = ("created_at",)
    change_form_after_template = "admin/console/call_detail.html"
    fields = (
        "uuid",
        "conversation_uuid",
        "conversation_link",
        "service",
        "direction",
        "masked_from",
        "masked_to",
        "routed_by",
        "status_label",
        "detail",
        "hook_shown",
        "started_at",
        "ringing_at",
        "answered_at",
        "ended_at",
        "duration",
        "price",
        "rate",
        "network",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        # Exists, not Count: an aggregate would make the changelist's count group the whole table.
        recordings = Recording.objects.filter(call=OuterRef("pk"))
        return with_pool_flags(super().get_queryset(request)).annotate(n_recordings=Exists(recordings))

    def search_by_term(self, request: HttpRequest, queryset: QuerySet[Call], term: str) -> QuerySet[Call]:
        condition = Q(uuid=term) | Q(conversation_uuid=term)
        with contextlib.suppress(ValueError):
            condition |= Q(conversation_id=uuid.UUID(term))
        digits = numbers_from_search(term)
        if digits:
            condition |= (
                Q(from_number__in=digits)
                | Q(to_number__in=digits)
                | Q(from_participant__real_number__in=digits)
                | Q(to_participant__real_number__in=digits)
            )
        return queryset.filter(condition)

    @display(description="Call")
    def short_uuid(self, obj: Call) -> str:
        return obj.uuid[:8]

    @display(description="Conversation")
    def conversation_link(self, obj: Call) -> str:
        if obj.conversation_id is None:
            return "—"
        url = reverse("admin:proxy_conversation_change", args=[obj.conversation_id])
        return format_html('<a class="underline" href="{}">{}</a>', url, str(obj.conversation_id)[:8])

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: Call) -> str:
        return obj.status or "—"

    @display(description="Hook")
    def hook_shown(self, obj: Call) -> str:
        """What a marketplace hook decided for the call, and why (never a number)."""
        if not obj.hook:
            return "—"
        timing = f", {obj.hook_ms} ms" if obj.hook_ms is not None else ""
        return f"{obj.get_hook_display()}: {obj.hook_outcome} ({obj.hook_detail}{timing})"

    @display(description="Recording")
    def has_recording(self, obj: Call) -> str:
        return "▶ yes" if obj.n_recordings else ""  # type: ignore[attr-defined]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        call = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if call is not None:
            events: QuerySet[CallEvent] = CallEvent.objects.filter(Q(call=call) | Q(call_uuid=call.uuid)).order_by(
                "timestamp", "received_at"
            )
            extra_context["timeline"] = [(event, _masked_payload(event.payload)) for event in events]
            transcripts = {row.recording_uuid: row for row in call.transcripts.all()}
            extra_context["recordings"] = [(rec, transcripts.get(rec.recording_uuid)) for rec in call.recordings.all()]
            extra_context["can_play"] = can_play(request)
        return super().change_view(request, object_id, form_url, extra_context)


# --- Outboxes: SMS notifications and marketplace callbacks --------------------------------------
@admin.register(Notification)
class NotificationAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("created_at", "service", "masked_to", "from_number", "status_label", "attempts", "last_error")
    list_filter = ("status", "service")
    search_fields = ("message_id",)
    actions = ("retry",)
    list_select_related = ("service",)
    exclude = ("to_number", "participant", "text")
    readonly_fields = (
        "service",
        "masked_to",
        "from_number",
        "masked_text",
        "status",
        "message_id",
        "attempts",
        "last_error",
        "price",
        "created_at",
        "updated_at",
    )

    @display(description="To")
    def masked_to(self, obj: Notification) -> str:
        return mask(obj.to_number)

    @display(description="Text")
    def masked_text(self, obj: Notification) -> str:
        # The text names the participant's PIN when PINs are on: a secret, hidden here.
        pin = obj.participant.pin
        return obj.text.replace(pin, "•" * len(pin)) if pin else obj.text

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: Notification) -> str:
        return obj.status

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("proxy.change_notification")

    @action(description="Retry selected failed SMS", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        rows = queryset.select_related("participant__conversation")
        retried = retry_each(self, request, rows, lambda row: notification_retry(notification=row))
        report_retries(
            self, request, retried=retried, selected=len(rows), noun="SMS", why="not failed, or its conversation ended"
        )


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("created_at", "service", "event", "status_label", "attempts", "last_status_code", "last_error")
    list_filter = ("status", "event", "service")
    actions = ("retry",)
    list_select_related = ("service",)

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: CallbackDelivery) -> str:
        return obj.status

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("proxy.change_callbackdelivery")

    @action(description="Retry selected failed callbacks", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[CallbackDelivery]) -> None:
        rows = list(queryset)
        retried = retry_each(self, request, rows, lambda row: callback_retry(delivery=row))
        report_retries(self, request, retried=retried, selected=len(rows), noun="callback", why="not failed")


@admin.register(CallHangup)
class CallHangupAdmin(ReadOnlyMixin, ModelAdmin):
    """Calls hung up because their conversation ended (the call-control outbox)."""

    list_display = ("created_at", "call_link", "status_label", "attempts", "last_error", "done_at")
    list_filter = ("status",)
    search_fields = ("call__uuid",)
    list_select_related = ("call",)

    @display(description="Call")
    def call_link(self, obj: CallHangup) -> str:
        url = reverse("admin:proxy_call_change", args=[obj.call_id])
        return format_html('<a class="underline" href="{}">{}</a>', url, obj.call.uuid[:8])

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: CallHangup) -> str:
        return obj.status


# --- Staff accounts, roles and the admin log, in the console's look --------------------------
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("action_time", "user", "content_type", "object_repr", "action_label", "change")
    list_filter = ("action_flag", "content_type", "user")
    search_fields = ("object_repr", "change_message")
    date_hierarchy = "action_time"
    list_select_related = ("user", "content_type")

    @display(description="Action", label={"Added": "success", "Changed": "info", "Deleted": "danger"})
    def action_label(self, obj: LogEntry) -> str:
        return {1: "Added", 2: "Changed", 3: "Deleted"}.get(obj.action_flag, "?")

    @display(description="Change")
    def change(self, obj: LogEntry) -> str:
        return obj.get_change_message()
