"""Celery entry points of the webhooks app."""

from __future__ import annotations

from celery import shared_task

from webhooks import services


# The first run after enabling it may face months of events: more than the default limits.
@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900)
def call_event_payloads_redact() -> int:
    """Beat: drop the personal data of raw events past their retention."""
    return services.call_event_payloads_redact()
