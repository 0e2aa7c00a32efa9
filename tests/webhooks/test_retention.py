"""Raw Vonage event payloads lose their personal data after CALL_EVENT_RETENTION_DAYS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.models import CallEvent
from tests.conftest import ALICE, BOB
from webhooks.services import REDACTED_PAYLOAD, call_event_payloads_redact
from webhooks.tasks import call_event_payloads_redact as redact_task

pytestmark = pytest.mark.django_db


def _event(key: str, *, days_ago: float, **fields) -> CallEvent:
    return CallEvent.objects.create(
        call_uuid="call-1",
        kind="status",
        status="completed",
        dedup_key=key,
        received_at=timezone.now() - timedelta(days=days_ago),
        payload={"from": ALICE, "to": BOB, "status": "completed", **fields},
    )


def test_payloads_past_the_retention_are_redacted_and_the_rows_kept(settings):
    settings.CALL_EVENT_RETENTION_DAYS = 30
    old = _event("old", days_ago=31)
    sms = _event("sms", days_ago=45, text="my address is 1 Main St")
    recent = _event("recent", days_ago=29)

    assert call_event_payloads_redact() == 2

    old.refresh_from_db()
    sms.refresh_from_db()
    recent.refresh_from_db()
    assert old.payload == REDACTED_PAYLOAD and sms.payload == REDACTED_PAYLOAD
    assert old.payload_redacted and not recent.payload_redacted
    assert (old.kind, old.status, old.call_uuid) == ("status", "completed", "call-1")
    assert recent.payload["from"] == ALICE
    # Nothing left to do on the next run.
    assert call_event_payloads_redact() == 0


def test_batches_go_on_until_nothing_is_left(settings, monkeypatch):
    from webhooks import services

    monkeypatch.setattr(services, "_REDACT_BATCH", 2)
    settings.CALL_EVENT_RETENTION_DAYS = 30
    for i in range(5):
        _event(f"e{i}", days_ago=40 + i)

    assert call_event_payloads_redact() == 5
    assert not CallEvent.objects.filter(payload_redacted=False).exists()


def test_zero_days_keeps_payloads(settings):
    settings.CALL_EVENT_RETENTION_DAYS = 0
    event = _event("kept", days_ago=3650)

    assert call_event_payloads_redact() == 0
    event.refresh_from_db()
    assert event.payload["to"] == BOB


def test_the_beat_task_redacts(settings):
    settings.CALL_EVENT_RETENTION_DAYS = 90
    _event("old", days_ago=91)

    assert redact_task.apply().get() == 1
    assert CallEvent.objects.get().payload == REDACTED_PAYLOAD
