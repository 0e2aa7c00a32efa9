"""Everything Vonage calls for voice. Every request must carry a valid signature.

The answer webhook never fails: whatever arrives, Vonage gets a valid NCCO and a 200,
because an error sends the caller to the fallback URL and then drops the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from proxy.ncco import GENERIC_UNAVAILABLE_TEXT, talk_ncco
from webhooks.payloads import request_payload, text
from webhooks.services import answer_call, event_receive
from webhooks.signatures import SignatureError, verify_voice_webhook

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest], HttpResponse]


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


def _ncco_response(ncco: list[dict[str, Any]]) -> JsonResponse:
    return JsonResponse(ncco, safe=False)


def _safe_answer(payload: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return answer_call(payload=payload)
    except Exception:
        # A database outage must still give the caller a message, never a 5xx.
        logger.exception("answer webhook failed; speaking the generic message")
        return talk_ncco(GENERIC_UNAVAILABLE_TEXT, None)


@signed_voice_webhook
def answer(request: HttpRequest) -> HttpResponse:
    return _ncco_response(_safe_answer(request_payload(request)))


@signed_voice_webhook
def event(request: HttpRequest) -> HttpResponse:
    outcome = event_receive(payload=request_payload(request), source="event")
    if outcome.ncco is not None:
        return _ncco_response(outcome.ncco)
    return HttpResponse(status=204)


@signed_voice_webhook
def recording(request: HttpRequest) -> HttpResponse:
    event_receive(payload=request_payload(request), source="recording")
    return HttpResponse(status=204)


@signed_voice_webhook
def fallback(request: HttpRequest) -> HttpResponse:
    """Vonage's second try: route answers exactly like /answer, keep events, always a valid NCCO."""
    payload = request_payload(request)
    original = payload.get("original_request")
    kind = text(original, "type", 10) if isinstance(original, dict) else ""
    logger.warning("fallback webhook (%s): reason=%s", kind or "unknown", text(payload, "reason", 200) or "-")
    if kind == "event" or (not kind and "status" in payload):
        outcome = event_receive(payload=payload, source="fallback")
        service = outcome.call.conversation.service if outcome.call and outcome.call.conversation else None
        fallback_text = service.unavailable_text if service else GENERIC_UNAVAILABLE_TEXT
        return _ncco_response(outcome.ncco or talk_ncco(fallback_text, service))
    answer_fields = {k: v for k, v in payload.items() if k not in ("reason", "original_request")}
    return _ncco_response(_safe_answer(answer_fields))
