"""Nothing is lost: a broker down at commit, lost tasks, the redrive; expiry sweep; periodic jobs.

Recording and transcript copies: tests/proxy/test_recordings.py."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.utils import timezone
from kombu.exceptions import OperationalError

from proxy import tasks
from proxy.models import CallbackDelivery, Conversation, Notification, Participant, Recording
from telephony.models import SandboxMessage
from telephony.sandbox.engine import failure_inject
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


def _broker_down():
    error = OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    return mock.patch("celery.app.task.Task.apply_async", side_effect=error)


def _age(minutes: int) -> None:
    """Pretend everything happened ``minutes`` ago."""
    then = timezone.now() - timedelta(minutes=minutes)
    Notification.objects.update(updated_at=then, created_at=then)
    Notification.objects.exclude(next_attempt_at=None).update(next_attempt_at=then)
    Participant.objects.update(created_at=then)
    CallbackDelivery.objects.update(created_at=then)
    Recording.objects.update(created_at=then)


def test_broker_down_at_commit_loses_nothing(api, pool, django_capture_on_commit_callbacks):
    body = {"participants": [{"number": ALICE}, {"number": BOB}]}
    with _broker_down(), django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/conversations", body, format="json")
    assert response.status_code == 201
    assert Notification.objects.filter(status=Notification.Status.QUEUED).count() == 2
    assert not SandboxMessage.objects.exists()

    # Too early: the tasks may just be slow.
    assert tasks.outbox_redrive.apply().get()["notifications"] == 0

    _age(minutes=20)
    with django_capture_on_commit_callbacks(execute=True):
        counts = tasks.outbox_redrive.apply().get()
    assert counts["notifications"] == 2 and counts["validations"] == 1
    sent = Notification.objects.filter(status=Notification.Status.SENT)
    assert sent.count() == 2
    # Exactly as recorded in the outbox row.
    for notification in sent:
        assert SandboxMessage.objects.get(to_number=notification.to_number).text == notification.text

    # Running the redrive again sends nothing twice.
    _age(minutes=20)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.outbox_redrive.apply()
    assert SandboxMessage.objects.count() == 2


def test_redrive_after_throttling_finishes_the_job(service, pool):
    from proxy.services import conversation_create

    conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
    failure_inject(path="/sms/", mode="throttle", count=2)
    for notification in Notification.objects.all():
        tasks.send_notification.apply(args=[notification.pk])  # eager: no inline retry
    assert Notification.objects.filter(status=Notification.Status.QUEUED).count() == 2
    _age(minutes=20)
    tasks.outbox_redrive.apply()
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    assert set(Notification.objects.values_list("attempts", flat=True)) == {2}


def test_overdue_callbacks_are_redriven(service, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    due = CallbackDelivery.objects.create(
        service=service,
        event="conversation.closed",
        payload={},
        url="http://127.0.0.1:9/x",
        next_attempt_at=timezone.now() - timedelta(minutes=5),
    )
    later = CallbackDelivery.objects.create(
        service=service,
        event="conversation.closed",
        payload={},
        url="http://127.0.0.1:9/x",
        next_attempt_at=timezone.now() + timedelta(minutes=30),
    )
    counts = tasks.outbox_redrive.apply().get()
    assert counts["callbacks"] == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert due.status == "failed" and due.attempts == 1  # it ran (and refused the loopback URL)
    assert later.status == "pending" and later.attempts == 0


def test_lost_validation_of_a_silent_conversation_is_redriven(service, pool):
    from proxy.services import conversation_create

    conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)
    _age(minutes=20)
    assert tasks.outbox_redrive.apply().get()["validations"] == 1
    assert set(Participant.objects.values_list("validation", flat=True)) == {"valid"}


# --- Expiry sweep ------------------------------------------------------------------------------


def test_expiry_task_writes_expired_conversations_down(service):
    past = timezone.now() - timedelta(seconds=5)
    expired = [ConversationFactory(service=service, expires_at=past) for _ in range(3)]
    live = ConversationFactory(service=service)
    assert tasks.conversations_expire.apply().get() == 3
    assert set(Conversation.objects.filter(pk__in=[c.pk for c in expired]).values_list("status", flat=True)) == {
        "expired"
    }
    live.refresh_from_db()
    assert live.status == "open"
    assert tasks.conversations_expire.apply().get() == 0


def test_only_one_sweep_runs_at_a_time(service):
    ConversationFactory(service=service, expires_at=timezone.now() - timedelta(seconds=5))
    cache.add(tasks.expiry_lock_key(), "1", timeout=60)
    try:
        assert tasks.conversations_expire.apply().get() == 0
    finally:
        cache.delete(tasks.expiry_lock_key())
    assert tasks.conversations_expire.apply().get() == 1


def test_beat_schedule_is_synced_into_django_celery_beat():
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import ModelEntry

    from config.celery import app

    # A worker imports every app's task module when it starts.
    app.loader.import_default_modules()
    # What DatabaseScheduler.setup_schedule does with each entry when beat starts.
    for name, entry in app.conf.beat_schedule.items():
        ModelEntry.from_entry(name, app=app, **entry)
    scheduled = dict(PeriodicTask.objects.values_list("name", "task"))
    assert scheduled["expire-conversations"] == "proxy.tasks.conversations_expire"
    assert scheduled["outbox-redrive"] == "proxy.tasks.outbox_redrive"
    for name in scheduled.values():
        assert name in app.tasks, name
    assert PeriodicTask.objects.get(name="expire-conversations").expire_seconds == 25


def test_tasks_for_vanished_rows_do_nothing():
    assert tasks.send_notification.apply(args=[999999]).get() == "skipped"
    assert tasks.deliver_callback.apply(args=[999999]).get() == "skipped"
    assert tasks.download_recording.apply(args=[999999]).get() == "skipped"
    assert tasks.download_transcript.apply(args=[999999]).get() == "skipped"
    missing = "00000000-0000-0000-0000-000000000000"
    assert tasks.validate_conversation_numbers.apply(args=[missing]).get() == "skipped"


def test_run_periodic_command_sweeps_and_redrives(service):
    from io import StringIO

    from django.core.management import call_command

    ConversationFactory(service=service, expires_at=timezone.now() - timedelta(seconds=5))
    out = StringIO()
    call_command("run_periodic", stdout=out)
    report = out.getvalue()
    assert "expire-conversations: 1" in report
    # every job of the beat schedule runs, the purges of personal data included
    for job in ("outbox-redrive", "idempotency-purge", "number-checks-prune", "retention"):
        assert f"{job}: " in report and f"{job}: failed" not in report
    assert Conversation.objects.get().status == "expired"
