from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from config.celery import app
from proxy.models import IdempotencyRecord
from proxy.tasks import idempotency_purge


def test_idempotency_records_older_than_a_day_are_purged(service):
    old = IdempotencyRecord.objects.create(
        service=service, key="old", request_hash="x", created_at=timezone.now() - timedelta(hours=25)
    )
    fresh = IdempotencyRecord.objects.create(service=service, key="fresh", request_hash="y")
    assert idempotency_purge.apply().get() == 1
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not IdempotencyRecord.objects.filter(pk=old.pk).exists()


def test_every_scheduled_task_exists():
    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks
