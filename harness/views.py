"""The sandbox's try-it page (staff only): place a sandbox call and watch NCCO and events, or
text a proxy number and see what the sandbox relays.

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
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from harness.callplayer import OUTCOMES, WITHHELD_CALLER, ClientTransport, call_play
from harness.masking import played_call_shown, text_mask
from harness.selectors import caller_choices, participant_call_numbers, sandbox_state
from harness.smsplayer import receipts_play, sms_play
from proxy.phone import InvalidNumber, normalize
from telephony.models import SandboxFailure, SandboxMessage
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


class SmsForm(forms.Form):
    """Someone texts a proxy number: a participant (their real number and proxy number), or any number."""

    participant = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Sender")
    sender = forms.CharField(required=False, max_length=32, label="…or any sender number")
    proxy_number = forms.CharField(required=False, max_length=32, label="Proxy number texted")
    text = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}), initial="At the gate, blue car.")
    receipts = forms.BooleanField(required=False, initial=True, label="Deliver the receipts of what the sandbox sends")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(c.participant_id, c.label.replace(" dials ", " texts ")) for c in caller_choices()]
        field = self.fields["participant"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [("", "— pick a participant —"), *choices]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        sender, proxy_number = data.get("sender", ""), data.get("proxy_number", "")
        if data.get("participant"):
            numbers = participant_call_numbers(participant_id=data["participant"])
            if numbers is None:
                raise forms.ValidationError("That participant no longer exists.")
            sender, proxy_number = sender or numbers[0], proxy_number or numbers[1]
        if not sender or not proxy_number:
            raise forms.ValidationError("Pick a participant, or give a sender and a proxy number.")
        try:
            data["sender_digits"] = normalize(sender, default_country=settings.PROXY_DEFAULT_COUNTRY)
            data["proxy_digits"] = normalize(proxy_number, default_country=settings.PROXY_DEFAULT_COUNTRY)
        except InvalidNumber as error:
            raise forms.ValidationError(str(error)) from error
        return data


class FailureForm(forms.Form):
    path = forms.ChoiceField(
        choices=[(p, p) for p in ("/sms/json", "/ni/", "/number/", "/account/numbers", "/v1/calls", "/v1/files/")]
    )
    mode = forms.ChoiceField(choices=SandboxFailure.Mode.choices)
    count = forms.IntegerField(min_value=1, max_value=100, initial=1)


# The sandbox pages change what the sandbox does (reset it, make it fail, place calls that
# write call rows and send callbacks): a pool administrator's job, not an operator's.
SANDBOX_PERMISSION = "numbers.change_virtualnumber"


def administrators_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff are sent to log in (staff_member_required); staff without the permission get 403."""
    return staff_member_required(permission_required(SANDBOX_PERMISSION, raise_exception=True)(view))


def sandbox_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not sandbox_chosen():
            raise Http404("The sandbox is not the active provider.")
        return view(request, *args, **kwargs)

    return wrapped


@sandbox_only
@administrators_only
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
    return _page(request, form=form, result=result, shown=shown)


def _page(request: HttpRequest, **context: Any) -> HttpResponse:
    context = {
        "form": CallForm(),
        "sms_form": SmsForm(),
        "failure_form": FailureForm(),
        **context,
        **sandbox_state(),
    }
    return render(request, "sandbox/home.html", context)


@sandbox_only
@administrators_only
@require_POST
def sandbox_sms(request: HttpRequest) -> HttpResponse:
    """Play an inbound SMS into this deployment; show what the sandbox sent on (the relay)."""
    form = SmsForm(request.POST)
    if not form.is_valid():
        return _page(request, sms_form=form)
    data = form.cleaned_data
    transport = ClientTransport(host=request.get_host(), secure=request.is_secure())
    before = SandboxMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    secret = settings.VONAGE_SIGNATURE_SECRET
    method = settings.VONAGE_SIGNATURE_METHOD
    sender, to = data["sender_digits"], data["proxy_digits"]
    play = sms_play(transport, sender=sender, to=to, text=data["text"], secret=secret, method=method)
    # One row per SMS: the sandbox keeps a long one as one row per part, each with the whole text.
    sent = list(SandboxMessage.objects.filter(pk__gt=before, part=1).order_by("pk"))
    receipts = receipts_play(transport, messages=sent, secret=secret, method=method) if data["receipts"] else None
    steps = play.steps + (receipts.steps if receipts else [])
    keep = {data["proxy_digits"], *(m.from_number for m in sent)}
    sms_result = {
        "ok": play.ok and (receipts is None or receipts.ok),
        "error": text_mask(play.error or (receipts.error if receipts else ""), keep=keep),
        "steps": [
            {"label": step.label, "path": step.path, "status": step.status, "at": step.params.get("message-timestamp")}
            for step in steps
        ],
        # What the sandbox sent because of this text: the relay (or an auto-reply).
        "sent": [{"from": m.from_number, "to": m.to_number, "text": m.text} for m in sent],
    }
    initial = {"participant": data.get("participant"), "receipts": data["receipts"]}
    return _page(request, sms_form=SmsForm(initial=initial), sms_result=sms_result)


def _replay_initial(data: dict[str, Any], *, keep: frozenset[str]) -> dict[str, Any]:
    # Never the keys typed: they may be a PIN.
    initial = {key: data.get(key) for key in ("participant", "use_pin", "outcome", "duration")}
    if data.get("proxy_digits") in keep:
        initial["proxy_number"] = data["proxy_digits"]
    return initial


@sandbox_only
@administrators_only
@require_POST
def sandbox_failure(request: HttpRequest) -> HttpResponse:
    form = FailureForm(request.POST)
    if form.is_valid():
        failure_inject(path=form.cleaned_data["path"], mode=form.cleaned_data["mode"], count=form.cleaned_data["count"])
        messages.success(request, "The sandbox will fail as asked.")
    return redirect("sandbox:home")


@sandbox_only
@administrators_only
@require_POST
def sandbox_clear(request: HttpRequest) -> HttpResponse:
    sandbox_reset()
    messages.success(request, "The sandbox account is empty again.")
    return redirect("sandbox:home")
