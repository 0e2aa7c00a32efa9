"""Staff console: texts (relayed, the services' own, auto-replies, kept) and opt-outs.

Registered from proxy/admin.py. People's numbers are shown masked, pool numbers in full.
Staff retry a failed text, or relay a held one, while its conversation is open.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from proxy.admin_support import (
    STATUS_LABELS,
    CallEndsMixin,
    PrivateSearchMixin,
    ReadOnlyMixin,
    numbers_from_search,
    report_retries,
    retry_each,
    with_pool_flags,
)
from proxy.message_outbox import message_retry
from proxy.models import Message, MessageContact
from proxy.phone import mask

_SHOWN_TEXT = 80


def _text_shown(message: Message, limit: int | None = _SHOWN_TEXT) -> str:
    if message.redacted:
        return "(removed after the retention period)"
    if message.encoding == "binary":
        return "(binary message)"
    text = message.text
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


class MessageInline(CallEndsMixin, ReadOnlyMixin, TabularInline):
    model = Message
    hide_title = True
    fk_name = "conversation"
    extra = 0
    fields = ("message_link", "created_at", "kind", "masked_from", "masked_to", "status_label", "short_text", "why")
    readonly_fields = fields
    verbose_name_plural = "Texts"
    ordering = ("-created_at", "-id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return with_pool_flags(super().get_queryset(request))

    @display(description="Text id")
    def message_link(self, obj: Message) -> str:
        return format_html(
            '<a class="underline" href="{}">{}</a>', reverse("admin:proxy_message_change", args=[obj.pk]), obj.pk
        )

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: Message) -> str:
        return obj.status

    @display(description="Text")
    def short_text(self, obj: Message) -> str:
        return _text_shown(obj)

    @display(description="Why not sent")
    def why(self, obj: Message) -> str:
        return obj.get_reason_display() if obj.reason else obj.last_error


@admin.register(Message)
class MessageAdmin(PrivateSearchMixin, CallEndsMixin, ReadOnlyMixin, ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "service",
        "conversation_link",
        "masked_from",
        "masked_to",
        "status_label",
        "reason",
        "attempts",
    )
    list_filter = ("status", "kind", "reason", "service", "created_at")
    search_fields = ("message_id",)
    search_help_text = "Vonage message id, conversation id, or a number typed in full (e.g. +1 201 555 0101)."
    list_select_related = ("service",)
    date_hierarchy = "created_at"
    actions = ("retry",)
    fields = (
        "kind",
        "status_label",
        "reason",
        "service",
        "conversation_link",
        "from_participant",
        "to_participant",
        "masked_from",
        "masked_to",
        "full_text",
        "encoding",
        "parts",
        "inbound_ids",
        "message_id",
        "attempts",
        "last_error",
        "price",
        "next_attempt_at",
        "redacted",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return with_pool_flags(super().get_queryset(request))

    def search_by_term(self, request: HttpRequest, queryset: QuerySet[Message], term: str) -> QuerySet[Message]:
        condition = Q(message_id=term)
        with contextlib.suppress(ValueError):
            condition |= Q(conversation_id=uuid.UUID(term))
        digits = numbers_from_search(term)
        if digits:
            condition |= Q(from_number__in=digits) | Q(to_number__in=digits)
        return queryset.filter(condition)

    @display(description="Conversation")
    def conversation_link(self, obj: Message) -> str:
        if obj.conversation_id is None:
            return "—"
        url = reverse("admin:proxy_conversation_change", args=[obj.conversation_id])
        return format_html('<a class="underline" href="{}">{}</a>', url, str(obj.conversation_id)[:8])

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: Message) -> str:
        return obj.status

    @display(description="Text")
    def full_text(self, obj: Message) -> str:
        return _text_shown(obj, limit=None)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("proxy.change_message")

    @action(description="Retry selected failed texts (relay held ones)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        rows = list(queryset.select_related("conversation"))
        retried = retry_each(self, request, rows, lambda row: message_retry(message=row))
        report_retries(
            self,
            request,
            retried=retried,
            selected=len(rows),
            noun="text",
            why="not failed or held, never meant to be sent, or its conversation ended",
        )


@admin.register(MessageContact)
class OptOutAdmin(PrivateSearchMixin, ReadOnlyMixin, ModelAdmin):
    """Numbers that texted STOP to a service (and whether they texted START since)."""

    list_display = ("service", "masked_number", "state", "opted_out_at", "opted_in_at")
    list_filter = ("opted_out", "service")
    search_fields = ("service__name",)
    search_help_text = "A number typed in full (e.g. +1 201 555 0101), or a service's name."
    list_select_related = ("service",)
    fields = ("service", "masked_number", "state", "opted_out_at", "opted_in_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[MessageContact]:
        # The table also remembers auto-replies to strangers: only opt-outs are shown.
        return super().get_queryset(request).filter(opted_out_at__isnull=False)

    def search_by_term(
        self, request: HttpRequest, queryset: QuerySet[MessageContact], term: str
    ) -> QuerySet[MessageContact]:
        digits = numbers_from_search(term)
        if digits:
            return queryset.filter(real_number__in=digits)
        return ModelAdmin.get_search_results(self, request, queryset, term)[0]

    @display(description="Number")
    def masked_number(self, obj: MessageContact) -> str:
        return mask(obj.real_number)

    @display(description="State", label={"Opted out": "danger", "Opted back in": "success"})
    def state(self, obj: MessageContact) -> str:
        return "Opted out" if obj.opted_out else "Opted back in"

    def get_list_display_links(self, request: HttpRequest, list_display: Any) -> Any:
        return ("masked_number",)
