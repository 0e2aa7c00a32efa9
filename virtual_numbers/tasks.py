"""Celery entry points for number validation."""

from __future__ import annotations

from celery import shared_task

from config.celery import backoff_delay, retry_later
from proxy.models import Notification
from proxy.outbox import enqueue_on_commit
from virtual_numbers.insight import conversation_numbers_validate, number_checks_prune

MAX_RETRIES = 3


@shared_task(bind=True, acks_late=True)
def validate_conversation_numbers(self, conversation_id: str) -> str:
    """Check the participants' numbers, then queue their SMS (none goes to an invalid number)."""
    from proxy.tasks import send_notification

    give_up = self.request.is_eager or self.request.retries >= MAX_RETRIES
    outcome = conversation_numbers_validate(conversation_id=conversation_id, give_up=give_up)
    if not outcome.found:
        return "skipped"
    if outcome.retry:
        retry_later(self, backoff_delay(self.request.retries + 1, base=5.0, cap=60.0))
    if outcome.valid:
        queued = Notification.objects.filter(
            participant__conversation_id=conversation_id, status=Notification.Status.QUEUED
        ).values_list("pk", flat=True)
        for pk in queued:
            enqueue_on_commit(send_notification, pk)
    return "valid" if outcome.valid else "invalid"


@shared_task(ignore_result=True)
def number_checks_prune_task() -> int:
    return number_checks_prune()
