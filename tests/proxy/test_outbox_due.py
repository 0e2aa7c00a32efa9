"""Every outbox row knows when it is next due: leases, the redrive's grace, a worker dying mid-send."""

from __future__ import annotations

import logging
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from proxy import outbox, tasks
from proxy.callbacks import CALLBACKS
from proxy.delivery.sms import IN_DOUBT_RECHECK, RECEIPT_WAIT, notification_send
from proxy.delivery.validation import conversation_numbers_validate
from proxy.models import CallbackDelivery, Notification, Participant
from proxy.notifications import SMS, client_ref_for, notification_receipt_apply
from proxy.outbox import LEASE, REDRIVE_GRACE
from proxy.services import conversation_create
from proxy.validation import VALIDATIONS
from telephony.models import SandboxMessage
from telephony.registry import get_provider
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db


def _queued(service, pool) -> Notification:
    conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
    Participant.objects.update(validation=Participant.Validation.VALID)
    return Notification.objects.get(to_number=ALICE)


def _died_mid_send(notification: Notification, *, accepted: bool) -> timezone.datetime:
    """What a worker SIGKILLed during the send leaves: the claim written, the outcome not.
    With ``accepted`` the provider took the message before the worker died."""
    started = timezone.now() - timedelta(minutes=2)
    Notification.objects.filter(pk=notification.pk).update(created_at=started - timedelta(seconds=1))
    assert SMS.claim(notification.pk, now=started, attempts=1, sending_since=started)
    if accepted:
        get_provider().send_sms(
            from_number=notification.from_number,
            to_number=notification.to_number,
            text=notification.text,
            client_ref=client_ref_for(notification),
        )
    return started


# --- A worker that dies in the middle of an SMS -------------------------------------------------


def test_died_after_the_provider_accepted_it_is_recorded_not_resent(service, pool):
    notification = _queued(service, pool)
    _died_mid_send(notification, accepted=True)
    assert notification.pk in SMS.lost(timezone.now(), 100)  # the lease is over

    assert notification_send(notification_id=notification.pk).result == "done"
    notification.refresh_from_db()
    message = SandboxMessage.objects.get(to_number=ALICE)
    assert (notification.status, notification.message_id) == ("sent", message.message_id)
    assert notification.sending_since is None and notification.attempts == 1
    # Nothing more to do for anyone.
    assert notification_send(notification_id=notification.pk).result == "skipped"
    assert SandboxMessage.objects.filter(to_number=ALICE).count() == 1


def test_died_before_the_provider_accepted_it_is_sent_once(service, pool):
    notification = _queued(service, pool)
    _died_mid_send(notification, accepted=False)
    assert notification_send(notification_id=notification.pk).result == "done"
    notification.refresh_from_db()
    assert notification.status == "sent" and notification.attempts == 2
    assert SandboxMessage.objects.filter(to_number=ALICE).count() == 1


def test_a_provider_that_cannot_tell_waits_for_the_receipt(service, pool, monkeypatch):
    monkeypatch.setattr(type(get_provider()), "can_look_up_sms", False)
    notification = _queued(service, pool)
    _died_mid_send(notification, accepted=True)
    now = timezone.now()

    outcome = notification_send(notification_id=notification.pk, now=now)
    assert outcome.result == "skipped" and "receipt" in outcome.detail
    notification.refresh_from_db()
    assert notification.status == "queued" and notification.next_attempt_at == now + IN_DOUBT_RECHECK
    assert notification.pk not in SMS.lost(now, 100)  # waiting on purpose

    # Vonage's receipt carries the client-ref: it settles the row.
    message = SandboxMessage.objects.get(to_number=ALICE)
    notification_receipt_apply(
        params={"messageId": message.message_id, "status": "delivered", "client-ref": client_ref_for(notification)}
    )
    notification.refresh_from_db()
    assert (notification.status, notification.sending_since, notification.next_attempt_at) == ("delivered", None, None)
    assert SandboxMessage.objects.filter(to_number=ALICE).count() == 1


def test_without_a_receipt_it_fails_rather_than_risk_sending_twice(service, pool, monkeypatch):
    monkeypatch.setattr(type(get_provider()), "can_look_up_sms", False)
    notification = _queued(service, pool)
    started = _died_mid_send(notification, accepted=False)
    outcome = notification_send(notification_id=notification.pk, now=started + RECEIPT_WAIT)
    assert outcome.result == "failed"
    notification.refresh_from_db()
    assert notification.status == "failed" and "unknown" in notification.last_error
    assert not SandboxMessage.objects.exists()


# --- Leases, grace, retries scheduled for later ---------------------------------------------------


def test_a_claimed_row_is_left_to_its_worker_until_the_lease_and_grace_are_over(service, pool):
    notification = _queued(service, pool)
    now = timezone.now()
    assert SMS.claim(notification.pk, now=now, sending_since=now)
    assert not SMS.claim(notification.pk, now=now)  # a second worker
    assert notification.pk not in SMS.lost(now + LEASE, 100)
    assert notification.pk in SMS.lost(now + LEASE + REDRIVE_GRACE, 100)


def test_a_new_row_is_lost_only_after_the_grace(service, pool):
    notification = _queued(service, pool)
    now = timezone.now()
    assert notification.pk not in SMS.lost(now, 100)
    assert notification.pk in SMS.lost(now + REDRIVE_GRACE + timedelta(seconds=1), 100)


def test_the_redrive_does_not_double_a_retry_scheduled_for_later(service):
    later = timezone.now() + timedelta(minutes=10)
    row = {"service": service, "event": "conversation.closed", "payload": {}, "url": "https://example.com/x"}
    waiting = CallbackDelivery.objects.create(**row, attempts=1, next_attempt_at=later)
    assert waiting.pk not in CALLBACKS.lost(timezone.now(), 100)
    assert waiting.pk in CALLBACKS.lost(later + REDRIVE_GRACE, 100)


def test_the_redrive_queues_a_row_once_per_quiet_period_until_the_cache_is_emptied(service, pool, monkeypatch):
    from django.core.cache import cache

    monkeypatch.setattr("proxy.outbox.REQUEUE_QUIET", timedelta(seconds=90))
    notification = _queued(service, pool)
    Notification.objects.exclude(pk=notification.pk).update(status=Notification.Status.SENT)
    key = outbox._requeue_key(SMS, notification.pk)
    cache.delete(key)
    Notification.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    queued: list[tuple] = []
    monkeypatch.setattr("proxy.outbox.queue_now", lambda *args: queued.append(args))

    assert outbox.outbox_redrive()["notifications"] == 1
    assert outbox.outbox_redrive()["notifications"] == 0  # its message is probably still waiting
    # Redis came back empty: the memory went with the messages, so it is queued again at once.
    cache.delete(key)
    assert outbox.outbox_redrive()["notifications"] == 1
    assert queued.count((SMS.task, notification.pk)) == 2
    cache.delete(key)


def test_a_backlog_is_logged_at_warning_with_its_services(service, pool, caplog, monkeypatch):
    _queued(service, pool)
    Notification.objects.update(created_at=timezone.now() - timedelta(minutes=30))
    monkeypatch.setattr("proxy.outbox.queue_now", lambda *args: None)
    with caplog.at_level(logging.WARNING, logger="proxy.outbox"):
        outbox.outbox_redrive()
    record = next(r for r in caplog.records if "backlog" in r.getMessage() and r.outbox == "notifications")
    assert record.levelno == logging.WARNING
    assert record.services == {"acme": 2} and record.past_due == 2 and record.oldest_seconds >= 30 * 60 - 5


def test_two_workers_validating_one_conversation_check_it_once(service, pool):
    conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)
    conversation_id = Participant.objects.first().conversation_id
    now = timezone.now()
    assert VALIDATIONS.claim(conversation_id, now=now)  # the first worker, still looking up
    outcome = conversation_numbers_validate(conversation_id=conversation_id, give_up=False, now=now)
    assert outcome.claimed is False
    assert set(Participant.objects.values_list("validation", flat=True)) == {"pending"}
    # Its lease over, another worker takes it.
    later = now + LEASE + timedelta(seconds=1)
    assert conversation_numbers_validate(conversation_id=conversation_id, give_up=False, now=later).claimed
    assert set(Participant.objects.values_list("validation", flat=True)) == {"valid"}


def test_a_validation_retry_is_due_after_its_backoff_not_its_lease(service, pool):
    from telephony.sandbox.engine import failure_inject

    conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)
    conversation_id = Participant.objects.first().conversation_id
    failure_inject(path="/ni/", mode="5xx", count=2)
    now = timezone.now()
    outcome = conversation_numbers_validate(conversation_id=conversation_id, give_up=False, now=now, retry_in=5)
    assert outcome.retry
    due = set(Participant.objects.values_list("validation_due_at", flat=True))
    assert due == {now + timedelta(seconds=5)}


def test_eager_tasks_for_rows_not_due_do_nothing(service, pool):
    notification = _queued(service, pool)
    Notification.objects.update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert tasks.send_notification.apply(args=[notification.pk]).get() == "skipped"
    with mock.patch("telephony.sandbox.provider.SandboxProvider.send_sms") as send:
        notification_send(notification_id=notification.pk)
    send.assert_not_called()


def test_a_task_lost_with_its_worker_is_done_again_within_two_minutes():
    from config.celery import REDRIVE_EVERY_SECONDS
    from proxy.outbox import TASK_TIME_LIMITS

    # A worker's lease outlives anything it may be running, and recovery fits in two minutes.
    assert LEASE.total_seconds() > TASK_TIME_LIMITS["time_limit"]
    assert LEASE.total_seconds() + REDRIVE_GRACE.total_seconds() + REDRIVE_EVERY_SECONDS <= 120
