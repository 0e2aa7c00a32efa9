"""Celery entry points for the outboxes. Thin: load by id, call a service, own the retry."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from config.celery import retry_later
from proxy.callbacks import callback_deliver
from proxy.notifications import notification_send
from proxy.outbox import outbox_stale
from proxy.recording_files import recording_download

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "celery:worker-heartbeat"
# Callback retries further out than this wait for the redrive instead of an ETA message,
# which Redis would hand out again after its visibility timeout.
_CALLBACK_COUNTDOWN_MAX = 300.0


@shared_task(bind=True, acks_late=True)
def send_notification(self, notification_id: int) -> str:
    outcome = notification_send(notification_id=notification_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(bind=True, acks_late=True)
def deliver_callback(self, delivery_id: int) -> str:
    outcome = callback_deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None and outcome.retry_in <= _CALLBACK_COUNTDOWN_MAX:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(acks_late=True)
def deliver_callbacks(delivery_ids: list[int]) -> int:
    """Fan a chunk of deliveries out to one task each."""
    for delivery_id in delivery_ids:
        deliver_callback.delay(delivery_id)
    return len(delivery_ids)


@shared_task(bind=True, acks_late=True)
def download_recording(self, recording_id: int) -> str:
    outcome = recording_download(recording_id=recording_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


def expiry_lock_key() -> str:
    """Per database: deployments (and parallel test runs) sharing one Redis don't block each other."""
    return f"proxy:expiry-sweep-lock:{connection.settings_dict['NAME']}"


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def conversations_expire() -> int:
    """Beat: write down expired conversations, set-based; one sweep at a time."""
    from proxy.services import conversations_expire_due

    lock = expiry_lock_key()
    if not cache.add(lock, "1", timeout=300):
        return 0
    try:
        count = conversations_expire_due(now=timezone.now())
    finally:
        cache.delete(lock)
    if count:
        logger.info("expired %s conversations", count)
    return count


@shared_task(acks_late=True)
def outbox_redrive() -> dict[str, int]:
    """Beat: queue again every outbox row whose task was lost. Idempotent: tasks claim rows."""
    from virtual_numbers.tasks import validate_conversation_numbers

    stale = outbox_stale()
    for conversation_id in stale.validations:
        validate_conversation_numbers.delay(conversation_id)
    for pk in stale.notifications:
        send_notification.delay(pk)
    for pk in stale.callbacks:
        deliver_callback.delay(pk)
    for pk in stale.recordings:
        download_recording.delay(pk)
    counts = {
        "validations": len(stale.validations),
        "notifications": len(stale.notifications),
        "callbacks": len(stale.callbacks),
        "recordings": len(stale.recordings),
    }
    if any(counts.values()):
        logger.info("outbox redrive queued %s", counts)
    return counts


@shared_task(ignore_result=True)
def worker_heartbeat() -> float:
    """Beat: proves to /health that beat schedules and a worker runs."""
    now = time.time()
    cache.set(HEARTBEAT_KEY, now, timeout=600)
    return now


# The first run after enabling it may face months of events: more than the default limits.
@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900)
def call_event_payloads_redact() -> int:
    """Beat: drop the personal data of raw events past their retention."""
    from webhooks.services import call_event_payloads_redact as redact

    return redact()


@shared_task(acks_late=True)
def idempotency_purge() -> int:
    """Beat: forget Idempotency-Key records past their 24 hours."""
    from proxy.api.idempotency import idempotency_records_purge

    return idempotency_records_purge()
