"""Staff console for services, keys, conversations and calls.

Real numbers are personal data: every list and page shows them masked. Staff find a
person's conversations by typing the number in full into the search box; it is
normalised the way the API normalises it and never echoed back whole.
Every change goes through the core services and is written to the admin log.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminPasswordWidget, UnfoldAdminTextareaWidget, UnfoldAdminURLInputWidget

from proxy import admin_calls, admin_pins, admin_recordings  # noqa: F401  (register the call, PIN, recording and staff pages)
from proxy.admin_messages import MessageInline
from proxy.admin_support import (
    STATUS_LABELS,
    CallEndsMixin,
    IndexedListMixin,
    PrivateSearchMixin,
    ReadOnlyMixin,
    numbers_from_search,
    on_action_page,
    with_pool_flags,
)
from proxy.api_keys import api_key_create, api_key_revoke
from proxy.errors import ConversationEnded, InvalidInput
from proxy.models import (
    ApiKey,
    Call,
    Conversation,
    Notification,
    Participant,
    Service,
)
from proxy.phone import mask
from proxy.service_settings import URL_FIELDS, callback_secret_replace, service_urls_check
from proxy.sms_template import sms_template_errors
from virtual_numbers.models import VirtualNumber

# --- Services and API keys ------------------------------------------------------------------
admin.site.site_title = "Masked calling"
admin.site.index_title = "Console"

_TEXTS = (
    "greeting_text",
    "unknown_caller_text",
    "ended_text",
    "unavailable_text",
    "not_allowed_text",
    "sms_template",
)
_PIN_TEXTS = ("pin_prompt_text", "pin_invalid_text", "pin_no_input_text", "pin_goodbye_text")


_RECORDINGS = (
    "record_notice",
    "record_notice_language",
    "record_notice_voice_style",
    "transcribe",
    "retention_days",
)


class ServiceForm(forms.ModelForm):
    callback_url = forms.URLField(
        required=False,
        assume_scheme="https",
        widget=UnfoldAdminURLInputWidget,
        help_text="Where conversation, call and message events are POSTed (optional).",
    )
    # Write-only: the page never carries the secret back, whoever looks at it.
    callback_secret = forms.CharField(
        required=False,
        max_length=200,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs every callback (X-Signature). Never shown again: leave empty to keep the current one.",
    )
    intercept_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=UnfoldAdminURLInputWidget,
        help_text="Asked before a known caller is connected: 2xx connects, 403 blocks (optional).",
    )
    out_of_session_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=UnfoldAdminURLInputWidget,
        help_text="Asked what to do with a caller who holds no open conversation on the number (optional).",
    )

    class Meta:
        model = Service
        fields = (
            "name",
            "slug",
            "is_active",
            "default_country",
            "rate_limit",
            "default_ttl",
            "cooldown",
            "recording_policy",
            "connect_timeout",
            "call_time_limit",
            "language",
            "voice_style",
            *_TEXTS,
            *_RECORDINGS,
            "pin_mode",
            *_PIN_TEXTS,
            "callback_url",
            "callback_secret",
            "callback_includes_text",
            "auto_reply_text",
            "message_limit_conversation",
            "message_limit_service",
            "intercept_url",
            "out_of_session_url",
            "intercept_on_error",
        )
        widgets = {
            name: UnfoldAdminTextareaWidget(attrs={"rows": 2})
            for name in (*_TEXTS, *_PIN_TEXTS, "record_notice", "auto_reply_text")
        }

    def clean_callback_secret(self) -> str:
        typed = self.cleaned_data.get("callback_secret") or ""
        return typed or (self.instance.callback_secret if self.instance.pk else "")

    def save(self, commit: bool = True) -> Service:
        if "callback_secret" in self.changed_data:
            # As a rotation over the API: the old secret signs beside the new one for a day.
            callback_secret_replace(
                self.instance, self.cleaned_data["callback_secret"], previous=self.initial.get("callback_secret") or ""
            )
        return super().save(commit)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # The API's rules: https, and an address every callback may reach.
        try:
            service_urls_check({field: data[field] for field in URL_FIELDS if field in data})
        except InvalidInput as exc:
            for field, problems in exc.errors.items():
                self.add_error(field, problems)
        if data.get("callback_url") and not data.get("callback_secret"):
            self.add_error("callback_secret", "A service with a callback URL needs a secret to sign its callbacks.")
        return data

    def clean_sms_template(self) -> str:
        template = self.cleaned_data.get("sms_template") or ""
        if errors := sms_template_errors(template):
            raise forms.ValidationError(errors)
        return template


class ApiKeyInline(ReadOnlyMixin, TabularInline):
    model = ApiKey
    hide_title = True
    extra = 0
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    verbose_name_plural = "API keys (issue and revoke them with the buttons above)"


class IssueKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the key is for, e.g. 'production'.")


def _count_per(rows: QuerySet[Any], owner: str = "service") -> Coalesce:
    """How many of ``rows`` belong to each listed row (through their ``owner`` foreign key), as a
    correlated subquery (0 when none): an aggregate would make the changelist's own count join
    and group the whole counted table."""
    counted = rows.filter(**{owner: OuterRef("pk")}).order_by().values(owner).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted), 0)


def _secret_shown(field: Any) -> Any:
    return "callback_secret_state" if field == "callback_secret" else field


@admin.register(Service)
class ServiceAdmin(ModelAdmin):
    form = ServiceForm
    list_display = (
        "name",
        "slug",
        "active_label",
        "default_country",
        "pin_mode",
        "pool_size",
        "open_conversations",
        "keys",
    )
    list_filter = ("is_active", "default_country", "recording_policy", "pin_mode")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (ApiKeyInline,)
    actions_detail = ("issue_key",)
    fieldsets = (
        ("Service", {"fields": ("name", "slug", "is_active", "default_country", "rate_limit")}),
        (
            "Conversations",
            {"fields": ("default_ttl", "cooldown", "recording_policy", "connect_timeout", "call_time_limit")},
        ),
        (
            "What callers hear and read",
            {
                "fields": (
                    ("language", "voice_style"),
                    *_TEXTS,
                )
            },
        ),
        (
            "Recordings and retention",
            {
                "fields": _RECORDINGS,
                "description": "Both people hear the notice before a recorded call is bridged. Recordings, "
                "transcripts, message texts, names and real numbers of a conversation are deleted or redacted "
                "this many days after it ends.",
            },
        ),
        (
            "Masked messages",
            {"fields": ("auto_reply_text", "message_limit_conversation", "message_limit_service")},
        ),
        (
            "PINs",
            {
                "fields": ("pin_mode", *_PIN_TEXTS),
                "description": "Off: the caller's number finds the conversation. Fallback: it still does, and "
                "anyone else calling a number with open PIN conversations is asked for one (shared phones, "
                "withheld caller IDs). Always: every caller keys in a PIN and one number per country can "
                "serve every conversation. A change applies to conversations opened from then on.",
            },
        ),
        ("Marketplace callbacks", {"fields": ("callback_url", "callback_secret", "callback_includes_text")}),
        ("Marketplace hooks", {"fields": ("intercept_url", "intercept_on_error", "out_of_session_url")}),
    )

    readonly_fields = ("callback_secret_state",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if self.has_change_permission(request, obj):
            return self.fieldsets
        # Read-only pages show each field's value: show whether a secret is set instead.
        return tuple(
            (name, {**options, "fields": tuple(_secret_shown(f) for f in options["fields"])})
            for name, options in self.fieldsets
        )

    @display(description="Callback secret")
    def callback_secret_state(self, obj: Service) -> str:
        return "Set (write-only)" if obj.callback_secret else "Not set"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Service]:
        # One correlated count each: three joins would multiply numbers x conversations x keys.
        now = timezone.now()
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_numbers=_count_per(VirtualNumber.objects.filter(state="active")),
                n_open=_count_per(Conversation.objects.filter(status="open", expires_at__gt=now)),
                n_keys=_count_per(ApiKey.objects.filter(revoked_at__isnull=True)),
            )
        )

    @display(description="Active", label={"Active": "success", "Paused": "danger"})
    def active_label(self, obj: Service) -> str:
        return "Active" if obj.is_active else "Paused"

    @display(description="Pool (active numbers)", ordering="n_numbers")
    def pool_size(self, obj: Service) -> str:
        url = reverse("admin:numbers_virtualnumber_changelist")
        return format_html('<a class="underline" href="{}?service__id__exact={}">{}</a>', url, obj.pk, obj.n_numbers)  # type: ignore[attr-defined]

    @display(description="Open conversations", ordering="n_open")
    def open_conversations(self, obj: Service) -> str:
        url = reverse("admin:proxy_conversation_changelist")
        count = obj.n_open  # type: ignore[attr-defined]
        return format_html(
            '<a class="underline" href="{}?{}">{}</a>',
            url,
            urlencode({"service__id__exact": str(obj.pk), "status": "open"}),
            count,
        )

    @display(description="Active keys", ordering="n_keys")
    def keys(self, obj: Service) -> int:
        return obj.n_keys  # type: ignore[attr-defined]

    def has_issue_key_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return request.user.has_perm("proxy.add_apikey")

    @action(description="Issue an API key", url_path="issue-key", permissions=["issue_key"], icon="key")
    def issue_key(self, request: HttpRequest, object_id: str) -> HttpResponse:
        service = get_object_or_404(Service, pk=object_id)
        form = IssueKeyForm(request.POST or None)
        key = ""
        if request.method == "POST" and form.is_valid():
            row, key = api_key_create(service=service, name=form.cleaned_data["name"])
            self.log_addition(request, row, f"Issued API key {row.prefix}… for {service}")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Issue an API key for {service}",
            "opts": self.model._meta,
            "original": service,
            "form": form,
            "key": key,
        }
        response = TemplateResponse(request, "admin/console/issue_key.html", context)
        response["Cache-Control"] = "no-store"  # the key is shown once and must not sit in a cache
        return response


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    list_display = ("prefix", "name", "service", "created_at", "last_used_at", "state")
    list_filter = ("service", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "name", "service__name")
    readonly_fields = ("service", "prefix", "name", "created_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)
    actions = ("revoke",)
    list_select_related = ("service",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued from the service page, where the key is shown once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row keeps the audit trail

    @display(description="State", label={"Active": "success", "Revoked": "danger"})
    def state(self, obj: ApiKey) -> str:
        return "Active" if obj.is_active else "Revoked"

    @action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key)
            self.log_change(request, key, "Revoked")
            count += 1
        self.message_user(request, f"Revoked {count} key{'s' if count != 1 else ''}.", messages.SUCCESS)


# --- Conversations --------------------------------------------------------------------------
class EffectiveStatusFilter(admin.SimpleListFilter):
    """Status as the API reports it: past its expiry an open conversation is expired."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Conversation.Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in Conversation.Status.values:
            return queryset.with_effective_status(self.value())  # type: ignore[attr-defined]
        return queryset


class ParticipantInline(ReadOnlyMixin, TabularInline):
    model = Participant
    hide_title = True
    extra = 0
    fields = (
        "masked_number",
        "name",
        "country",
        "proxy",
        "pin_set",
        "active",
        "cooldown_until",
        "validation",
        "sms",
    )
    readonly_fields = fields
    verbose_name_plural = "Participants"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Participant]:
        latest = Notification.objects.order_by("-created_at")
        return super().get_queryset(request).prefetch_related(Prefetch("notifications", queryset=latest))

    @display(description="Real number")
    def masked_number(self, obj: Participant) -> str:
        return mask(obj.real_number)

    @display(description="Proxy number (dials / sees)")
    def proxy(self, obj: Participant) -> str:
        return f"+{obj.proxy_number_id}"

    @display(description="PIN")
    def pin_set(self, obj: Participant) -> str:
        # A secret: the console says whether there is one, never which.
        if not obj.pin:
            return "—"
        return "set, routes by PIN only" if not obj.routes_by_pair else "set"

    @display(description="SMS")
    def sms(self, obj: Participant) -> str:
        notes = list(obj.notifications.all())
        if not notes:
            return "not asked"
        last = notes[0]
        return f"{last.status}{' — ' + last.last_error if last.last_error else ''}"


class CallInline(CallEndsMixin, ReadOnlyMixin, TabularInline):
    model = Call
    hide_title = True
    fk_name = "conversation"
    extra = 0
    fields = (
        "call_link",
        "direction",
        "masked_from",
        "masked_to",
        "status",
        "hook_outcome",
        "started_at",
        "duration",
        "price",
    )
    readonly_fields = fields
    verbose_name_plural = "Calls"

    @display(description="Call")
    def call_link(self, obj: Call) -> str:
        url = reverse("admin:proxy_call_change", args=[obj.pk])
        return format_html('<a class="underline" href="{}">{}</a>', url, obj.uuid[:8])

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        return with_pool_flags(super().get_queryset(request))


class ExtendForm(forms.Form):
    hours = forms.TypedChoiceField(
        coerce=int,
        choices=[(1, "1 hour"), (4, "4 hours"), (24, "1 day"), (72, "3 days"), (168, "1 week")],
        initial=24,
        label="Keep open until this long from now",
    )


@admin.register(Conversation)
class ConversationAdmin(PrivateSearchMixin, IndexedListMixin, ModelAdmin):
    list_display = (
        "short_id",
        "external_id",
        "service",
        "status_label",
        "people",
        "proxies",
        "n_calls",
        "created_at",
        "expires_at",
    )
    list_filter = (EffectiveStatusFilter, "service", "record", "created_at")
    search_fields = ("external_id",)
    search_help_text = "External id, conversation id, or a real or proxy number typed in full (e.g. +1 201 555 0101)."
    list_select_related = ("service",)
    # Indexed (conv_created); a date hierarchy would scan the table for its dates.
    sortable_by = ("short_id", "created_at")
    inlines = (ParticipantInline, CallInline, MessageInline)
    actions = ("close",)
    actions_detail = ("close_one", "extend")
    fields = (
        "id",
        "service",
        "external_id",
        "status_label",
        "closed_reason",
        "record",
        "created_at",
        "expires_at",
        "ended_at",
        "metadata",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .annotate(call_count=_count_per(Call.objects.all(), "conversation"))
            .prefetch_related(Prefetch("participants", queryset=Participant.objects.order_by("position")))
        )

    def search_by_term(
        self, request: HttpRequest, queryset: QuerySet[Conversation], term: str
    ) -> QuerySet[Conversation]:
        digits = numbers_from_search(term)
        if digits:
            people = Participant.objects.filter(Q(real_number__in=digits) | Q(proxy_number_id__in=digits))
            return queryset.filter(pk__in=people.values("conversation_id"))
        condition = Q(external_id=term) | Q(external_id__icontains=term)
        with contextlib.suppress(ValueError):
            condition |= Q(pk=uuid.UUID(term))
        return queryset.filter(condition)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations are opened by the marketplace over the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the page is a read-only record; closing and extending are actions

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_close_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        if not request.user.has_perm("proxy.change_conversation"):
            return False
        if object_id is None or on_action_page(request):
            return True
        # On a conversation's page, closing and extending are offered only while it is open;
        # a stale page that posts anyway gets the action's own explanation, not a 403.
        conversation = Conversation.objects.filter(pk=object_id).first()
        return conversation is not None and conversation.is_live

    @display(description="Conversation", ordering="created_at")
    def short_id(self, obj: Conversation) -> str:
        return str(obj.pk)[:8]

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: Conversation) -> str:
        return Conversation.Status(obj.effective_status).label

    @display(description="Participants (real numbers)")
    def people(self, obj: Conversation) -> str:
        return " ↔ ".join(mask(p.real_number) for p in obj.participants.all())

    @display(description="Proxy numbers")
    def proxies(self, obj: Conversation) -> str:
        return " / ".join(f"+{p.proxy_number_id}" for p in obj.participants.all())

    @display(description="Calls", ordering="call_count")
    def n_calls(self, obj: Conversation) -> int:
        return obj.call_count  # type: ignore[attr-defined]

    def _close(self, request: HttpRequest, conversation: Conversation) -> bool:
        from proxy.services import conversation_close

        if not conversation.is_live:
            return False
        conversation_close(conversation=conversation, reason="closed by staff")
        self.log_change(request, conversation, "Closed by staff")
        return True

    @action(description="Close selected conversations", permissions=["close"])
    def close(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        closed = sum(self._close(request, conversation) for conversation in queryset)
        self.message_user(
            request,
            f"Closed {closed} conversation{'s' if closed != 1 else ''}"
            + (" (the others had already ended)." if closed < len(queryset) else "."),
            messages.SUCCESS,
        )

    def _confirm_page(self, request: HttpRequest, conversation: Conversation, **extra: Any) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": conversation,
            "people": self.people(conversation),
            **extra,
        }
        return TemplateResponse(request, "admin/console/conversation_action.html", context)

    @action(description="Close", url_path="close", permissions=["close"], icon="call_end")
    def close_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        conversation = get_object_or_404(Conversation, pk=object_id)
        change_url = reverse("admin:proxy_conversation_change", args=[conversation.pk])
        if request.method == "POST":
            if self._close(request, conversation):
                self.message_user(request, "The conversation is closed; its numbers cool down.", messages.SUCCESS)
            else:
                self.message_user(request, "This conversation had already ended.", messages.INFO)
            return HttpResponseRedirect(change_url)
        return self._confirm_page(
            request,
            conversation,
            title="Close this conversation?",
            explanation="Calls between these participants stop at once; a late caller hears that the "
            "conversation has ended. This cannot be undone.",
            button="Close conversation",
            danger=True,
        )

    @action(description="Extend", url_path="extend", permissions=["close"], icon="more_time")
    def extend(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from proxy.services import conversation_update

        conversation = get_object_or_404(Conversation, pk=object_id)
        change_url = reverse("admin:proxy_conversation_change", args=[conversation.pk])
        form = ExtendForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            hours = form.cleaned_data["hours"]
            try:
                conversation = conversation_update(conversation=conversation, ttl=hours * 3600)
            except ConversationEnded:
                self.message_user(request, "An ended conversation cannot be extended.", messages.ERROR)
                return HttpResponseRedirect(change_url)
            self.log_change(
                request, conversation, f"Extended: now expires {conversation.expires_at:%Y-%m-%d %H:%M} UTC"
            )
            self.message_user(request, f"Open until {conversation.expires_at:%d %b %Y %H:%M} UTC.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        return self._confirm_page(
            request,
            conversation,
            title="Extend this conversation",
            explanation=f"It expires at {conversation.expires_at:%d %b %Y %H:%M} UTC now.",
            button="Extend",
            form=form,
        )
