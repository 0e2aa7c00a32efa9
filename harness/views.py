"""The sandbox's try-it page (staff only): place a sandbox call and watch NCCO and events.

It plays calls into this very deployment (real Call rows, real callbacks to the
marketplace), so it exists only while the sandbox stands in for Vonage: with Vonage
configured every view answers 404. What it shows has people's numbers masked.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from harness.callplayer import OUTCOMES, WITHHELD_CALLER, ClientTransport, call_play
from harness.masking import played_call_shown
from harness.selectors import caller_choices, participant_call_numbers, sandbox_state
from proxy.phone import InvalidNumber, normalize
from telephony.models import SandboxFailure
from telephony.registry import sandbox_chosen
from telephony.sandbox.engine import failure_inject, sandbox_reset


class CallForm(forms.Form):
    participant = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Caller")
    caller = forms.CharField(
        required=False, max_length=32, label='…or any caller number ("withheld" for a withheld caller ID)'
    )
    proxy_number = forms.CharField(required=False, max_length=32, label="Proxy number dialled")
    use_pin = forms.BooleanField(required=False, label="When asked for a PIN, key in the picked participant's PIN")
    pin = forms.CharField(
        required=False,
        max_length=20,
        label="…or key in these (0-9, * and #)",
        help_text="Separate several with commas: one per prompt, e.g. a wrong PIN then the right one.",
    )
    outcome = forms.ChoiceField(choices=[(o, o) for o in OUTCOMES], initial="answered")
    duration = forms.IntegerField(min_value=0, max_value=7200, initial=30, label="Call length (s)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(c.participant_id, c.label) for c in caller_choices()]
        field = self.fields["participant"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [("", "— pick a participant —"), *choices]

    def clean_pin(self) -> list[str]:
        keys = [part.strip() for part in (self.cleaned_data.get("pin") or "").split(",") if part.strip()]
        if any(set(part) - set("0123456789*#") for part in keys):
            raise forms.ValidationError("Keys are 0-9, * and #.")
        return keys

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        caller, proxy_number = data.get("caller", ""), data.get("proxy_number", "")
        pins = list(data.get("pin") or [])
        if data.get("participant"):
            numbers = participant_call_numbers(participant_id=data["participant"])
            if numbers is None:
                raise forms.ValidationError("That participant no longer exists.")
            caller, proxy_number = caller or numbers[0], proxy_number or numbers[1]
            if data.get("use_pin"):
                if not numbers[2]:
                    raise forms.ValidationError("That participant has no PIN: their service has PINs off.")
                pins = [*pins, numbers[2]]
        elif data.get("use_pin"):
            raise forms.ValidationError("Pick the participant whose PIN to key in.")
        if not caller or not proxy_number:
            raise forms.ValidationError("Pick a participant, or give a caller and a proxy number.")
        try:
            withheld = caller.strip().lower() == "withheld"
            default = settings.PROXY_DEFAULT_COUNTRY
            data["caller_digits"] = WITHHELD_CALLER if withheld else normalize(caller, default_country=default)
            data["proxy_digits"] = normalize(proxy_number, default_country=default)
        except InvalidNumber as error:
            raise forms.ValidationError(str(error)) from error
        data["pins"] = pins
        return data


class FailureForm(forms.Form):
    path = forms.ChoiceField(
        choices=[(p, p) for p in ("/sms/json", "/ni/", "/number/", "/account/numbers", "/v1/calls", "/v1/files/")]
    )
    mode = forms.ChoiceField(choices=SandboxFailure.Mode.choices)
    count = forms.IntegerField(min_value=1, max_value=100, initial=1)


def sandbox_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not sandbox_chosen():
            raise Http404("The sandbox is not the active provider.")
        return view(request, *args, **kwargs)

    return wrapped


@sandbox_only
@staff_member_required
@require_http_methods(["GET", "POST"])
def sandbox_home(request: HttpRequest) -> HttpResponse:
    form = CallForm(request.POST or None)
    result = None
    shown: dict[str, Any] = {}
    if request.method == "POST" and form.is_valid():
        # In-process: a single-worker development server would deadlock calling itself over HTTP.
        result = call_play(
            transport=ClientTransport(host=request.get_host(), secure=request.is_secure()),
            caller=form.cleaned_data["caller_digits"],
            proxy_number=form.cleaned_data["proxy_digits"],
            outcome=form.cleaned_data["outcome"],
            duration=form.cleaned_data["duration"],
            secret=settings.VONAGE_SIGNATURE_SECRET,
            pins=form.cleaned_data["pins"],
        )
        shown = played_call_shown(result=result)
        # A fresh form: the bound one would echo the caller's real number back into the page.
        form = CallForm(initial=_replay_initial(form.cleaned_data, keep=shown["keep"]))
    context = {
        "form": form,
        "failure_form": FailureForm(),
        "result": result,
        "shown": shown,
        **sandbox_state(),
    }
    return render(request, "sandbox/home.html", context)


def _replay_initial(data: dict[str, Any], *, keep: frozenset[str]) -> dict[str, Any]:
    # Never the keys typed: they may be a PIN.
    initial = {key: data.get(key) for key in ("participant", "use_pin", "outcome", "duration")}
    if data.get("proxy_digits") in keep:
        initial["proxy_number"] = data["proxy_digits"]
    return initial


@sandbox_only
@staff_member_required
@require_POST
def sandbox_failure(request: HttpRequest) -> HttpResponse:
    form = FailureForm(request.POST)
    if form.is_valid():
        failure_inject(path=form.cleaned_data["path"], mode=form.cleaned_data["mode"], count=form.cleaned_data["count"])
        messages.success(request, "The sandbox will fail as asked.")
    return redirect("sandbox:home")


@sandbox_only
@staff_member_required
@require_POST
def sandbox_clear(request: HttpRequest) -> HttpResponse:
    sandbox_reset()
    messages.success(request, "The sandbox account is empty again.")
    return redirect("sandbox:home")
