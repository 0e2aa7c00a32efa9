"""Everything Vonage calls for voice. Every request must carry a valid signature.

The answer webhook never fails: whatever arrives, Vonage gets a valid NCCO and a 200,
because an error sends the caller to the fallback URL and then drops the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from proxy.pins import PROMPT_PARAM
from webhooks.payloads import request_payload
from webhooks.pin_services import pin_input_safely
from webhooks.services import (
    answer_safely,
    event_receive,
    failed_connect_ncco,
    fallback_receive,
    record_notice_safely,
)
from webhooks.signatures import SignatureError, verify_voice_webhook

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest], HttpResponse]
HOOK_OUTCOME_HEADER = "X-Hook-Outcome"


def signed_voice_webhook(view: View) -> View:
    @csrf_exempt
    @require_http_methods(["GET", "POST"])
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            verify_voice_webhook(request)
        except SignatureError as exc:
            logger.warning("rejected %s webhook: %s", request.path, exc)
            return JsonResponse({"detail": "Invalid or missing webhook signature."}, status=401)
        return view(request)

    return wrapper


def _ncco_response(ncco: list[dict[str, Any]]) -> HttpResponse:
    # Plain JSON already (the SDK's models dumped in JSON mode, or a hook's parsed reply):
    # no need for JsonResponse's encoder class, made anew for every response.
    return HttpResponse(json.dumps(ncco), content_type="application/json")


def _payload(request: HttpRequest) -> dict[str, Any]:
    try:
        return request_payload(request)
    except Exception:
        # e.g. more query parameters than Django admits: still a caller to answer.
        logger.warning("unreadable %s webhook", request.path, exc_info=True)
        return {}


@signed_voice_webhook
def answer(request: HttpRequest) -> HttpResponse:
    answered = answer_safely(payload=_payload(request))
    response = _ncco_response(answered.ncco)
    if answered.decision is not None:
        # What a marketplace hook decided, for the sandbox's call player (Vonage ignores it).
        response[HOOK_OUTCOME_HEADER] = answered.decision.summary
    return response


@signed_voice_webhook
def event(request: HttpRequest) -> HttpResponse:
    """Keep the event; for a failed synchronous connect, tell the caller (an NCCO).

    When the event cannot be kept, a 503 makes Vonage try again through the fallback
    URL, unless a caller is waiting for an NCCO right now.
    """
    payload = _payload(request)
    try:
        ncco = event_receive(payload=payload, source="event").ncco
    except Exception:
        logger.exception("event webhook failed to keep an event")
        ncco = failed_connect_ncco(payload)
        if ncco is None:
            return JsonResponse({"detail": "Temporarily unavailable; retry."}, status=503)
    return _ncco_response(ncco) if ncco is not None else HttpResponse(status=204)


def _keep_file_event(payload: dict[str, Any], source: str) -> HttpResponse:
    """A recording or transcription webhook: kept, then 204 whatever happened.

    Never a 5xx: Vonage would send it to the fallback URL and the call's NCCO flow gains
    nothing by it. When it cannot be kept, the log names the recording so staff can
    recover it (the URL stays valid at Vonage for 30 days).
    """
    try:
        event_receive(payload=payload, source=source)
    except Exception:
        logger.exception(
            "%s webhook could not be kept: recording_uuid=%s conversation_uuid=%s",
            source,
            str(payload.get("recording_uuid", ""))[:64],
            str(payload.get("conversation_uuid", ""))[:64],
        )
    return HttpResponse(status=204)


@signed_voice_webhook
def pin_input(request: HttpRequest) -> HttpResponse:
    """The input event of a PIN prompt (its token in the query string): always an NCCO, never a 5xx."""
    token = request.GET.get(PROMPT_PARAM, "")
    payload = {k: v for k, v in _payload(request).items() if k != PROMPT_PARAM}
    return _ncco_response(pin_input_safely(payload=payload, token=token))


@signed_voice_webhook
def recording(request: HttpRequest) -> HttpResponse:
    return _keep_file_event(_payload(request), "recording")


@signed_voice_webhook
def transcription(request: HttpRequest) -> HttpResponse:
    """Vonage's transcript of a recording is ready (the record action's ``transcription.eventUrl``)."""
    return _keep_file_event(_payload(request), "transcription")


@signed_voice_webhook
def record_notice(request: HttpRequest) -> HttpResponse:
    """The callee's onAnswer NCCO in a recorded conversation: the recording notice, nothing else."""
    return _ncco_response(record_notice_safely(service_id=request.GET.get("service")))


@signed_voice_webhook
def fallback(request: HttpRequest) -> HttpResponse:
    """Vonage's second try: route answers exactly like /answer, keep events, always a valid NCCO."""
    return _ncco_response(fallback_receive(payload=_payload(request)))
