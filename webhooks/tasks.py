"""Celery entry points of the webhooks app."""

from __future__ import annotations

from celery import shared_task

from proxy.retention import retention_apply


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900)
def call_event_payloads_redact() -> dict[str, int]:
    """Former beat entry, kept so a schedule row left in the database by an older release
    still does the right thing: raw event payloads now follow the retention policy
    (``proxy.tasks.retention_run``), which this runs. Idempotent: running both is harmless."""
    return retention_apply()
