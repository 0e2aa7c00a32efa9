"""Callback delivery: POST one pending marketplace callback, signed, and record how it went."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import requests
from django.db.models import F, Q
from django.utils import timezone

from proxy.callbacks import CALLBACKS, RETRY_WINDOW, callback_body, signature_header
from proxy.models import CallbackDelivery
from proxy.outbox import Outcome, truncate
from proxy.safe_http import UnsafeCallbackUrl, callback_url_check, guarded_session

logger = logging.getLogger(__name__)

# A claimed delivery is left alone this long (longer than any request can take).
CLAIM_LEASE = timedelta(seconds=120)
TIMEOUT = (3.05, 10.0)
USER_AGENT = "masked-calling-callbacks/1"


def callback_deliver(*, delivery_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at POSTing a pending delivery and record how it went."""
    now = now or timezone.now()
    delivery = CallbackDelivery.objects.select_related("service").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != CallbackDelivery.Status.PENDING:
        return Outcome.skipped("not pending")
    if delivery.next_attempt_at and delivery.next_attempt_at > now:
        return Outcome.skipped("not due, or being delivered by another worker")
    claimed = (
        CallbackDelivery.objects.filter(pk=delivery.pk, status=CallbackDelivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(attempts=F("attempts") + 1, next_attempt_at=now + CLAIM_LEASE)
    )
    if not claimed:
        return Outcome.skipped("claimed by another worker")
    attempt = delivery.attempts + 1

    status_code: int | None = None
    try:
        callback_url_check(delivery.url)
    except UnsafeCallbackUrl as exc:
        return _give_up(delivery, f"Refused: {exc}", status_code=None)
    body = callback_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Callback-Event": delivery.event,
        "X-Callback-Id": str(delivery.payload.get("id", "")),
        "X-Signature-Timestamp": str(timestamp),
    }
    signature = signature_header(service=delivery.service, timestamp=timestamp, body=body)
    if signature is not None:
        headers["X-Signature"] = signature
    try:
        with guarded_session() as session:
            response = session.post(delivery.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        status_code = response.status_code
        if 200 <= status_code < 300:
            CallbackDelivery.objects.filter(pk=delivery.pk).update(
                status=CallbackDelivery.Status.DELIVERED,
                last_status_code=status_code,
                last_error="",
                delivered_at=timezone.now(),
                next_attempt_at=None,
            )
            return Outcome.done(str(status_code))
        error = f"HTTP {status_code}"

    delay = CALLBACKS.retry.delay(attempt)
    next_attempt = timezone.now() + timedelta(seconds=delay)
    if next_attempt > delivery.created_at + RETRY_WINDOW:
        return _give_up(delivery, f"Gave up after {attempt} attempts over a day: {error}", status_code=status_code)
    CallbackDelivery.objects.filter(pk=delivery.pk, status=CallbackDelivery.Status.PENDING).update(
        last_status_code=status_code, last_error=truncate(error), next_attempt_at=next_attempt
    )
    logger.info("callback %s attempt %s failed (%s); next in %.0fs", delivery.pk, attempt, error, delay)
    return Outcome.retry(delay, error)


def _give_up(delivery: CallbackDelivery, error: str, *, status_code: int | None) -> Outcome:
    CallbackDelivery.objects.filter(pk=delivery.pk).update(
        status=CallbackDelivery.Status.FAILED,
        last_status_code=status_code,
        last_error=truncate(error),
        next_attempt_at=None,
    )
    logger.warning("callback %s failed for good: %s", delivery.pk, error)
    return Outcome.failed(error)
