"""SMS webhooks: delivery receipts and inbound messages, signed Vonage's SMS way.

With ``VONAGE_SIGNATURE_SECRET`` set, a request without a valid ``sig`` gets 401. Every
accepted callback is kept as a raw event for audit (``CallEvent`` with ``source``
"sms-status" or "sms-inbound"), once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from proxy.parsers import storable
from webhooks.payloads import sms_params
from webhooks.signatures import SmsSignatureError, sms_verify
from webhooks.sms_services import sms_inbound_receive, sms_receipt_receive

logger = logging.getLogger("webhooks.sms")


def _accept(request: HttpRequest) -> dict[str, str] | HttpResponse:
    try:
        params = sms_params(request)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "Malformed body."}, status=400)
    secret = settings.VONAGE_SIGNATURE_SECRET
    if secret:
        try:
            sms_verify(params, secret=secret, method=settings.VONAGE_SIGNATURE_METHOD)
        except SmsSignatureError as exc:
            logger.warning("SMS webhook %s rejected: %s", request.path, exc)
            return JsonResponse({"detail": "Invalid signature."}, status=401)
    # Checked as received, stored as the database can hold it.
    return storable(params)


def signed_sms_webhook(view: Callable[[dict[str, str]], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Read and verify the callback (400 malformed, 401 bad signature), then ``view(params)``."""

    @csrf_exempt
    @require_http_methods(["GET", "POST"])
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        accepted = _accept(request)
        return accepted if isinstance(accepted, HttpResponse) else view(accepted)

    return wrapper


@signed_sms_webhook
def sms_status(params: dict[str, str]) -> HttpResponse:
    """A delivery receipt: 200 even when it matches no message, so Vonage stops retrying."""
    sms_receipt_receive(params=params)
    return HttpResponse(status=200)


@signed_sms_webhook
def sms_inbound(params: dict[str, str]) -> HttpResponse:
    """An SMS someone sent to a pool number."""
    sms_inbound_receive(params=params)
    return HttpResponse(status=200)
