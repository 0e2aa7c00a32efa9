"""Staff console for the pool: buy, import, move, drain and release numbers.

The admin stays thin: every change goes through ``virtual_numbers.services`` and is
written to the admin log (LogEntry), custom actions included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from proxy.admin_support import ReadOnlyMixin, on_action_page
from proxy.models import Service
from proxy.phone import mask, pretty
from telephony.provider import ProviderError
from virtual_numbers import services
from virtual_numbers.admin_provisioning import ProvisioningAdmin
from virtual_numbers.models import NumberCheck, PoolExhaustion, VirtualNumber
from virtual_numbers.selectors import with_open_conversations

# Released in the pool, but Vonage did not confirm the cancel: we still pay for it.
_CANCEL_PENDING = Q(state=VirtualNumber.State.RELEASED, released_at__isnull=True)
_RENTED = ~Q(state=VirtualNumber.State.RELEASED) | _CANCEL_PENDING
_STILL_RENTED_LABEL = "Released, still rented at Vonage"


class StateFilter(admin.SimpleListFilter):
    """Released numbers are history: hidden unless asked for (or Vonage still bills them)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("all", "All, released too"), *[(c.value, c.label) for c in VirtualNumber.State]]

    def choices(self, changelist: Any) -> Any:
        for choice in super().choices(changelist):
            if choice["display"] == "All":
                choice["display"] = "Rented (active, draining, or cancel pending)"
            yield choice

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "all":
            return queryset
        if value:
            return queryset.filter(state=value)
        return queryset.filter(_RENTED)


class MoveForm(forms.Form):
    service = forms.ModelChoiceField(
        queryset=Service.objects.all(), required=False, empty_label="No pool (unassigned)", label="Move to pool"
    )


@admin.register(VirtualNumber)
class VirtualNumberAdmin(ProvisioningAdmin):
    list_display = (
        "number_display",
        "country",
        "number_type",
        "capabilities",
        "service",
        "state_display",
        "open_conversations",
        "monthly_cost",
        "linked",
    )
    list_filter = (StateFilter, "service", "country", "number_type", "voice", "sms")
    search_fields = ("number",)
    list_select_related = ("service",)
    ordering = ("service__name", "country", "number")
    actions = ("drain", "activate", "move_to_pool", "release", "link")
    actions_list = ("buy", "import_owned")
    actions_detail = ("drain_one", "activate_one", "move_one", "release_one")
    show_add_link = False
    list_per_page = 50
    readonly_fields = (
        "number",
        "country",
        "number_type",
        "voice",
        "sms",
        "service",
        "state",
        "monthly_cost",
        "linked_app_id",
        "created_at",
        "updated_at",
        "released_at",
        "open_conversations",
    )
    fieldsets = (
        (None, {"fields": ("number", "country", "number_type", ("voice", "sms"))}),
        ("Pool", {"fields": ("service", "state", "open_conversations", "linked_app_id", "monthly_cost")}),
        ("History", {"fields": ("created_at", "updated_at", "released_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[VirtualNumber]:
        return with_open_conversations(super().get_queryset(request))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Every field is read-only: changes are the buttons above, which go through the services.
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Numbers come in by buying or importing (they must exist at Vonage), never typed in.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: VirtualNumber | None = None) -> bool:
        return False  # release instead: past participants still point at the row

    def _can_provision(self, request: HttpRequest) -> bool:
        return request.user.has_perm("numbers.add_virtualnumber")

    def has_provision_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return self._can_provision(request)

    # A number's page offers only the changes that make sense in its state.
    def _state_is(self, request: HttpRequest, object_id: Any, *states: str) -> bool:
        # The action's own URL does not check: a stale page gets the service's explanation instead of a 403.
        if on_action_page(request):
            return True
        return VirtualNumber.objects.filter(pk=object_id, state__in=states).exists()

    def has_drain_one_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return self.has_change_permission(request) and self._state_is(request, object_id, VirtualNumber.State.ACTIVE)

    def has_activate_one_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return self.has_change_permission(request) and self._state_is(request, object_id, VirtualNumber.State.DRAINING)

    def has_move_one_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        rented = (VirtualNumber.State.ACTIVE, VirtualNumber.State.DRAINING)
        return self.has_change_permission(request) and self._state_is(request, object_id, *rented)

    def has_release_one_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        # Also offered on a released number Vonage still rents to us: releasing again retries the cancel.
        if not self._can_provision(request):
            return False
        return on_action_page(request) or VirtualNumber.objects.filter(_RENTED, pk=object_id).exists()

    @display(description="Number", ordering="number")
    def number_display(self, obj: VirtualNumber) -> str:
        return pretty(obj.number)

    @display(description="Capabilities")
    def capabilities(self, obj: VirtualNumber) -> str:
        return " · ".join(name for name, on in (("Voice", obj.voice), ("SMS", obj.sms)) if on) or "—"

    @display(
        description="State",
        ordering="state",
        label={
            VirtualNumber.State.ACTIVE.label: "success",
            VirtualNumber.State.DRAINING.label: "warning",
            VirtualNumber.State.RELEASED.label: "danger",
            _STILL_RENTED_LABEL: "danger",
        },
    )
    def state_display(self, obj: VirtualNumber) -> str:
        if obj.state == VirtualNumber.State.RELEASED and obj.released_at is None:
            return _STILL_RENTED_LABEL
        return obj.get_state_display()

    @display(description="Open conversations", ordering="open_count")
    def open_conversations(self, obj: VirtualNumber) -> str:
        count = obj.open_count  # type: ignore[attr-defined]
        if not count:
            return "0"
        url = reverse("admin:proxy_conversation_changelist")
        query = urlencode({"q": f"+{obj.number}", "status": "open"})
        return format_html('<a class="underline" href="{}?{}">{}</a>', url, query, count)

    @display(description="Linked", boolean=True)
    def linked(self, obj: VirtualNumber) -> bool:
        return bool(obj.linked_app_id)

    # --- bulk actions ------------------------------------------------------------------------
    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[VirtualNumber],
        change: Callable[[VirtualNumber], Any],
        done: str,
    ) -> None:
        changed = 0
        for number in queryset:
            try:
                change(number)
            except services.NumberStillRented as exc:
                # The pool did change (the number is released there), so the log says so.
                self.message_user(request, str(exc), messages.ERROR)
                self.log_change(request, number, f"{done} in the pool; Vonage did not cancel the rental")
                continue
            except (services.NumberError, ProviderError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.log_change(request, number, done)
            changed += 1
        if changed:
            self.message_user(request, f"{done}: {changed} number{'s' if changed != 1 else ''}.", messages.SUCCESS)

    @action(description="Drain (no new conversations)", permissions=["change"])
    def drain(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> None:
        self._each(request, queryset, lambda n: services.number_drain(number=n), "Drained")

    @action(description="Reactivate (take new conversations)", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> None:
        self._each(request, queryset, lambda n: services.number_activate(number=n), "Reactivated")

    @action(description="Release… (stop renting; refused while in use)", permissions=["provision"])
    def release(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> HttpResponse | None:
        if "apply" in request.POST:
            self._each(request, queryset, lambda n: services.number_release(number=n), "Released")
            return None
        return self._confirm(
            request,
            queryset,
            action_name="release",
            title="Release numbers",
            explanation="Vonage stops renting them to us; buying the same number back later is not guaranteed. "
            "A number still used by an open conversation is refused: drain it first. "
            "A number released here that Vonage did not cancel is still billed: release it again to retry.",
            button="Release",
            danger=True,
        )

    @action(description="Link to the Vonage application", permissions=["provision"])
    def link(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> None:
        self._each(request, queryset, lambda n: services.number_link(number=n), "Linked to the application")

    @action(description="Move to another pool…", permissions=["change"])
    def move_to_pool(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = MoveForm(request.POST)
            if form.is_valid():
                target = form.cleaned_data["service"]
                self._each(
                    request,
                    queryset,
                    lambda n: services.number_move(number=n, service=target),
                    f"Moved to {target or 'no pool'}",
                )
                return None
        else:
            form = MoveForm()
        return self._confirm(
            request,
            queryset,
            action_name="move_to_pool",
            title="Move numbers to another pool",
            explanation="A number busy with open conversations is refused: drain it first and move it once they end.",
            button="Move",
            form=form,
        )

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[VirtualNumber], *, action_name: str, **extra: Any
    ) -> TemplateResponse:
        """The intermediate page of a bulk action: what will change, and one button to do it."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "numbers": queryset,
            "action_name": action_name,
            "cancel_url": reverse("admin:numbers_virtualnumber_changelist"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            **extra,
        }
        return TemplateResponse(request, "admin/console/confirm_numbers.html", context)

    # --- the same changes from a number's own page -------------------------------------------
    def _one(
        self, request: HttpRequest, object_id: str, run: Callable[..., HttpResponse | None], **confirm: Any
    ) -> HttpResponse:
        queryset = self.get_queryset(request).filter(pk=object_id)
        if not queryset.exists():
            raise Http404
        change_url = reverse("admin:numbers_virtualnumber_change", args=[object_id])
        if request.method == "POST" and "apply" in request.POST:
            response = run(request, queryset)
            return response or HttpResponseRedirect(change_url)
        if confirm:
            return self._confirm(request, queryset, action_name="", cancel_url=change_url, **confirm)
        return run(request, queryset) or HttpResponseRedirect(change_url)

    @action(description="Drain", url_path="drain", permissions=["drain_one"], icon="hourglass_bottom")
    def drain_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._one(
            request,
            object_id,
            self.drain,
            title="Drain this number",
            explanation="It takes no new conversations; open ones keep it until they end. Release it once unused.",
            button="Drain",
        )

    @action(description="Reactivate", url_path="activate", permissions=["activate_one"], icon="play_arrow")
    def activate_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._one(
            request,
            object_id,
            self.activate,
            title="Reactivate this number",
            explanation="It takes new conversations again.",
            button="Reactivate",
        )

    @action(description="Move", url_path="move", permissions=["move_one"], icon="swap_horiz")
    def move_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._one(request, object_id, self.move_to_pool)

    @action(description="Release", url_path="release", permissions=["release_one"], icon="delete_forever")
    def release_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._one(request, object_id, self.release)


@admin.register(PoolExhaustion)
class PoolExhaustionAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("created_at", "service", "country", "buy_link")
    list_filter = ("service", "country")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)

    @display(description="")
    def buy_link(self, obj: PoolExhaustion) -> str:
        url = reverse("admin:numbers_virtualnumber_buy")
        return format_html(
            '<a class="underline" href="{}?{}">Buy numbers</a>',
            url,
            urlencode({"country": obj.country, "service": str(obj.service_id)}),
        )


@admin.register(NumberCheck)
class NumberCheckAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("masked_number", "valid", "country", "number_type", "carrier", "ported", "checked_at")
    list_filter = ("valid", "country", "number_type")
    exclude = ("number", "raw")
    readonly_fields = ("masked_number", "valid", "country", "number_type", "carrier", "ported", "checked_at")

    @display(description="Number")
    def masked_number(self, obj: NumberCheck) -> str:
        return mask(obj.number)
