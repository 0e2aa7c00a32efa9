"""Celery entry points of the proxy app. Thin: take ids, call one service or worker, own the retry."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from config.celery import WORKER_HEARTBEAT_KEY, retry_later
from proxy.delivery.callbacks import callback_deliver
from proxy.delivery.hangups import call_hang_up
from proxy.delivery.messages import message_parts_join, message_send, messages_drain
from proxy.delivery.recordings import recording_download, transcript_download
from proxy.delivery.sms import notification_send
from proxy.delivery.validation import conversation_validate_then_notify
from proxy.idempotency import idempotency_records_purge
from proxy.outbox import TASK_TIME_LIMITS, queue_now
from proxy.outbox import outbox_redrive as redrive
from proxy.retention import retention_apply
from proxy.services import conversations_expire_due
from proxy.validation import VALIDATIONS

logger = logging.getLogger(__name__)

# Callback retries further out than this wait for the redrive instead of an ETA message,
# which Redis would hand out again after its visibility timeout.
_CALLBACK_COUNTDOWN_MAX = 300.0


@shared_task(bind=True, acks_late=True, **TASK_TIME_LIMITS)
def send_notification(self, notification_id: int) -> str:
    outcome = notification_send(notification_id=notification_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(bind=True, acks_late=True, **TASK_TIME_LIMITS)
def send_message(self, message_id: int) -> str:
    outcome = message_send(message_id=message_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(acks_late=True, **TASK_TIME_LIMITS)
def send_messages() -> int:
    """Send every due text (woken by fresh texts; coalesced, see proxy.message_outbox)."""
    return messages_drain()


@shared_task(bind=True, acks_late=True, **TASK_TIME_LIMITS)
def assemble_message(self, part_id: int) -> str:
    """A concatenated text's timer: join its parts once their wait is over."""
    outcome = message_parts_join(part_id=part_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(bind=True, acks_late=True, **TASK_TIME_LIMITS)
def deliver_callback(self, delivery_id: int) -> str:
    outcome = callback_deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None and outcome.retry_in <= _CALLBACK_COUNTDOWN_MAX:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(acks_late=True)
def deliver_callbacks(delivery_ids: list[int]) -> int:
    """Fan a chunk of deliveries out to one task each."""
    for delivery_id in delivery_ids:
        queue_now(deliver_callback.name, delivery_id)
    return len(delivery_ids)


@shared_task(bind=True, acks_late=True, **TASK_TIME_LIMITS)
def hang_up_call(self, hangup_id: int) -> str:
    outcome = call_hang_up(hangup_id=hangup_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(acks_late=True)
def hang_up_calls(hangup_ids: list[int]) -> int:
    """Fan a chunk of hang-ups out to one task each."""
    for hangup_id in hangup_ids:
        queue_now(hang_up_call.name, hangup_id)
    return len(hangup_ids)


# A copy may take the download's whole limit and as long again into storage; the row's
# lease (proxy.outbox.LEASE) is renewed while it runs.
_COPY_LIMIT = 2 * settings.RECORDING_DOWNLOAD_SECONDS


@shared_task(bind=True, acks_late=True, soft_time_limit=_COPY_LIMIT + 30, time_limit=_COPY_LIMIT + 60)
def download_recording(self, recording_id: int) -> str:
    outcome = recording_download(recording_id=recording_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(bind=True, acks_late=True, soft_time_limit=_COPY_LIMIT + 30, time_limit=_COPY_LIMIT + 60)
def download_transcript(self, transcript_id: int) -> str:
    outcome = transcript_download(transcript_id=transcript_id)
    if outcome.retry_in is not None:
        retry_later(self, outcome.retry_in)
    return outcome.result


@shared_task(bind=True, acks_late=True, **TASK_TIME_LIMITS)
def validate_conversation_numbers(self, conversation_id: str) -> str:
    """Check the participants' numbers, then queue their SMS (none goes to an invalid number)."""
    give_up = self.request.is_eager or VALIDATIONS.retry.exhausted(self.request.retries)
    delay = VALIDATIONS.retry.delay(self.request.retries + 1)
    outcome = conversation_validate_then_notify(conversation_id=conversation_id, give_up=give_up, retry_in=delay)
    if not outcome.found or not outcome.claimed:
        return "skipped"
    if outcome.retry:
        retry_later(self, delay)
    return "valid" if outcome.valid else "invalid"


def expiry_lock_key() -> str:
    """Per database: deployments (and parallel test runs) sharing one Redis don't block each other."""
    return f"proxy:expiry-sweep-lock:{connection.settings_dict['NAME']}"


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def conversations_expire() -> int:
    """Beat: write down expired conversations, set-based; one sweep at a time."""
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
    return redrive()


@shared_task(ignore_result=True)
def worker_heartbeat() -> float:
    """Beat: proves to /health that beat schedules and a worker runs."""
    now = time.time()
    cache.set(WORKER_HEARTBEAT_KEY, now, timeout=600)
    return now


@shared_task(acks_late=True)
def idempotency_purge() -> int:
    """Beat: forget Idempotency-Key records past their 24 hours."""
    return idempotency_records_purge()


# The first run after enabling it may face months of conversations: more than the default limits.
@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900)
def retention_run() -> dict[str, int]:
    """Beat: delete or redact the personal data of conversations past their retention (proxy.retention)."""
    return retention_apply()
