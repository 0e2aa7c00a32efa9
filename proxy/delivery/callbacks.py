"""Callback delivery: POST one pending marketplace callback, signed, and record how it went."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import requests
from celery.exceptions import SoftTimeLimitExceeded
from django.db.models import F
from django.utils import timezone

from proxy.callbacks import CALLBACKS, RETRY_WINDOW, callback_body, signature_header
from proxy.models import CallbackDelivery
from proxy.outbox import Outcome, truncate
from proxy.safe_http import HostNotResolved, UnsafeCallbackUrl, callback_url_check, deadline, guarded_session

logger = logging.getLogger(__name__)

TIMEOUT = (3.05, 10.0)
# The most one attempt may take, connection to status line; well under the task's soft limit.
TOTAL_SECONDS = 20.0
USER_AGENT = "masked-calling-callbacks/1"


def callback_deliver(*, delivery_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at POSTing a pending delivery and record how it went."""
    now = now or timezone.now()
    delivery = CallbackDelivery.objects.select_related("service").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != CallbackDelivery.Status.PENDING:
        return Outcome.skipped("not pending")
    if delivery.next_attempt_at and delivery.next_attempt_at > now:
        return Outcome.skipped("not due, or being delivered by another worker")
    if not CALLBACKS.claim(delivery.pk, now=now, attempts=F("attempts") + 1):
        return Outcome.skipped("claimed by another worker")
    attempt = delivery.attempts + 1

    status_code: int | None = None
    try:
        callback_url_check(delivery.url)
    except HostNotResolved as exc:
        if not exc.transient:
            return _give_up(delivery, f"Refused: {exc}", status_code=None)
        return _retry_or_give_up(delivery, attempt, str(exc), status_code=None)
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
        # Only the status counts: the body is never read (stream=True, then closed), and
        # the whole exchange ends at TOTAL_SECONDS whatever the server drips.
        with deadline(TOTAL_SECONDS) as struck, guarded_session() as session:
            response = session.post(
                delivery.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
            )
            response.close()
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
        if struck.is_set():
            error = f"No answer within {TOTAL_SECONDS:g} s ({error})"
    except SoftTimeLimitExceeded:
        # The task's soft limit: an attempt that failed like any other, with its retry
        # scheduled, rather than a claimed row the redrive hands out again and again.
        error = "Stopped at the task's soft time limit"
    else:
        status_code = response.status_code
        if struck.is_set():
            # Cut off mid-answer, the headers read as ended: the status proves nothing.
            error, status_code = f"No complete answer within {TOTAL_SECONDS:g} s", None
        elif 200 <= status_code < 300:
            CallbackDelivery.objects.filter(pk=delivery.pk).update(
                status=CallbackDelivery.Status.DELIVERED,
                last_status_code=status_code,
                last_error="",
                delivered_at=timezone.now(),
                next_attempt_at=None,
            )
            return Outcome.done(str(status_code))
        else:
            error = f"HTTP {status_code}"
    return _retry_or_give_up(delivery, attempt, error, status_code=status_code)


def _retry_or_give_up(delivery: CallbackDelivery, attempt: int, error: str, *, status_code: int | None) -> Outcome:
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
