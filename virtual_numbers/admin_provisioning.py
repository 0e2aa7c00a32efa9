"""The pool's provisioning pages: search and buy numbers at Vonage, import numbers the account rents.

``VirtualNumberAdmin`` builds on it: the pages are its buttons above the list. They stay thin:
Vonage is reached only through ``virtual_numbers.services``, and every number added
is written to the admin log.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from unfold.admin import ModelAdmin
from unfold.decorators import action

from proxy.models import Service
from telephony.provider import AvailableNumber, ProviderError
from virtual_numbers import services
from virtual_numbers.models import VirtualNumber


class SearchForm(forms.Form):
    country = forms.CharField(max_length=2, min_length=2, initial="US", help_text="ISO code, e.g. US, GB")
    number_type = forms.ChoiceField(
        choices=[("", "Any type"), *VirtualNumber.Type.choices], required=False, label="Type"
    )
    features = forms.MultipleChoiceField(
        choices=[("VOICE", "Voice"), ("SMS", "SMS")],
        initial=["VOICE", "SMS"],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    pattern = forms.CharField(max_length=15, required=False, help_text="Digits the number should contain")
    size = forms.IntegerField(min_value=1, max_value=100, initial=10, label="Results")

    def clean_country(self) -> str:
        return self.cleaned_data["country"].upper()

    def clean_pattern(self) -> str:
        pattern = self.cleaned_data["pattern"].strip()
        if pattern and not pattern.isdigit():
            raise forms.ValidationError("Digits only.")
        return pattern


def offer_encode(found: AvailableNumber) -> str:
    """An offer as a checkbox value, so buying needs no second search."""
    cost = "" if found.monthly_cost is None else str(found.monthly_cost)
    return ";".join([found.number, found.country, found.number_type, "+".join(found.features), cost])


def offer_decode(value: str) -> AvailableNumber | None:
    parts = value.split(";")
    if len(parts) != 5 or not parts[0].isdigit():
        return None
    number, country, number_type, features, cost = parts
    try:
        monthly_cost = Decimal(cost) if cost else None
    except InvalidOperation:
        monthly_cost = None
    return AvailableNumber(
        number=number,
        country=country,
        number_type=number_type,
        features=tuple(f for f in features.split("+") if f),
        monthly_cost=monthly_cost,
    )


def _plural(count: int) -> str:
    return f"{count} number{'s' if count != 1 else ''}"


class ProvisioningAdmin(ModelAdmin):
    """A ModelAdmin with the pool's provisioning buttons, ``buy`` and ``import_owned`` (permission ``provision``)."""

    @action(description="Buy numbers", url_path="buy", permissions=["provision"], icon="add_shopping_cart")
    def buy(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            return self._buy_selected(request)
        form = SearchForm(request.GET if "country" in request.GET else None)
        results: list[tuple[AvailableNumber, str]] = []
        error = ""
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                found = services.number_search_offers(
                    country=data["country"],
                    number_type=data["number_type"],
                    features=tuple(data["features"]),
                    pattern=data["pattern"],
                    size=data["size"],
                )
            except ProviderError as exc:
                error = f"Vonage did not answer the search: {exc}"
                found = []
            results = [(offer, offer_encode(offer)) for offer in found]
        context = {
            **self.admin_site.each_context(request),
            "title": "Buy numbers",
            "opts": self.model._meta,
            "form": form,
            "results": results,
            "error": error,
            "services": Service.objects.order_by("name"),
            "selected_service": request.GET.get("service", ""),
        }
        return TemplateResponse(request, "admin/console/buy_numbers.html", context)

    def _buy_selected(self, request: HttpRequest) -> HttpResponse:
        chosen = [found for value in request.POST.getlist("number") if (found := offer_decode(value))]
        valid, service = self._chosen_service(request)
        if not valid:
            return HttpResponseRedirect(request.get_full_path())
        if not chosen:
            self.message_user(request, "Tick at least one number to buy.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        bought = 0
        for found in chosen:
            row: VirtualNumber | None
            try:
                row = services.number_buy_offer(offer=found, service=service)
            except services.NumberNotLinked as exc:
                # Bought but not linked: we rent it, so it is logged as added all the same.
                self.message_user(request, str(exc), messages.ERROR)
                row = exc.number
            except services.NumberError as exc:  # e.g. already in the pool: nothing was bought
                self.message_user(request, str(exc), messages.ERROR)
                continue
            except ProviderError as exc:
                self.message_user(request, f"Vonage refused +{found.number}: {exc}", messages.ERROR)
                continue
            self.log_addition(request, row, f"Bought from Vonage into {service or 'no pool'}")
            bought += 1
        if bought:
            self.message_user(request, f"Bought {_plural(bought)} into {service or 'no pool'}.", messages.SUCCESS)
        url = reverse("admin:numbers_virtualnumber_changelist")
        return HttpResponseRedirect(f"{url}?service__id__exact={service.pk}" if service else url)

    @action(description="Import owned numbers", url_path="import", permissions=["provision"], icon="download")
    def import_owned(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            return self._import(request)
        error = ""
        try:
            owned = services.number_list_owned()
        except ProviderError as exc:
            owned, error = (
                services.OwnedNumbers(new=[], known_count=0),
                f"Vonage did not list the account's numbers: {exc}",
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import numbers the account owns",
            "opts": self.model._meta,
            "new": owned.new,
            "known_count": owned.known_count,
            "error": error,
            "services": Service.objects.order_by("name"),
        }
        return TemplateResponse(request, "admin/console/import_numbers.html", context)

    def _chosen_service(self, request: HttpRequest) -> tuple[bool, Service | None]:
        """The pool picked in the form: (True, None) for none, (False, None) for a value
        that names no service (reported to the user; nothing is bought or imported)."""
        value = request.POST.get("service") or ""
        if not value:
            return True, None
        service = Service.objects.filter(pk=int(value)).first() if value.isascii() and value.isdigit() else None
        if service is None:
            self.message_user(request, "Pick a pool from the list (or none).", messages.ERROR)
            return False, None
        return True, service

    def _import(self, request: HttpRequest) -> HttpResponse:
        valid, service = self._chosen_service(request)
        if not valid:
            return HttpResponseRedirect(request.get_full_path())
        try:
            imported = services.number_import_owned(service=service)
        except ProviderError as exc:
            self.message_user(request, f"Vonage did not list the account's numbers: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        for row in imported:
            self.log_addition(request, row, f"Imported from the Vonage account into {service or 'no pool'}")
        self.message_user(
            request,
            f"Imported {_plural(len(imported))} into {service or 'no pool'}."
            if imported
            else "Every number the account owns is already in the console.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:numbers_virtualnumber_changelist"))
