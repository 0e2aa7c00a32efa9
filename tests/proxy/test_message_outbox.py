"""The message outbox: one send per claim, retries with backoff, permanent failures, the redrive,
staff retries, and receipts that find their text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from proxy import tasks
from proxy.delivery.messages import message_send
from proxy.message_outbox import MESSAGES, message_receipt_apply, message_retry
from proxy.messaging import number_opt_out
from proxy.models import CallbackDelivery, Message
from proxy.outbox import outbox_redrive
from proxy.services import conversation_close
from telephony.models import SandboxMessage
from telephony.sandbox.engine import failure_inject
from tests.conftest import ALICE, BOB
from tests.proxy.messages_helpers import alice_and_bob

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(service, pool) -> Message:
    conversation, alice, bob = alice_and_bob(service, pool)
    return Message.objects.create(
        kind=Message.Kind.RELAY,
        service=service,
        conversation=conversation,
        from_participant=alice,
        to_participant=bob,
        from_number=bob.proxy_number_id,
        to_number=BOB,
        text="on my way",
        next_attempt_at=timezone.now(),
    )


def test_a_queued_text_is_sent_once_however_often_its_task_runs(queued):
    assert message_send(message_id=queued.pk).result == "done"
    assert message_send(message_id=queued.pk).result == "skipped"
    assert tasks.send_message.apply(args=[queued.pk]).get() == "skipped"
    assert SandboxMessage.objects.count() == 1
    queued.refresh_from_db()
    assert (queued.status, queued.attempts, queued.next_attempt_at) == ("sent", 1, None)


def test_a_throttled_send_waits_with_backoff_then_goes(queued):
    failure_inject(path="/sms/", mode="throttle", count=1)
    outcome = message_send(message_id=queued.pk)
    assert outcome.result == "retry" and outcome.retry_in is not None and outcome.retry_in >= 1
    queued.refresh_from_db()
    assert (queued.status, queued.attempts) == ("queued", 1)
    assert "Throughput Rate Exceeded" in queued.last_error and "temporary" in queued.last_error
    assert queued.next_attempt_at > timezone.now()
    # Not due yet: an early run (a duplicate task) changes nothing.
    assert message_send(message_id=queued.pk).result == "skipped"
    assert message_send(message_id=queued.pk, now=queued.next_attempt_at).result == "done"
    assert SandboxMessage.objects.count() == 1


def test_the_backoff_grows_and_gives_up(queued):
    delays = [MESSAGES.retry.delay(n) for n in (1, 2, 3, 8)]
    assert delays[0] <= 10 and delays[-1] <= 600
    Message.objects.filter(pk=queued.pk).update(attempts=MESSAGES.retry.max_attempts, last_error="throttled")
    assert message_send(message_id=queued.pk).result == "failed"
    queued.refresh_from_db()
    assert queued.status == "failed" and queued.last_error.startswith("Gave up after 8 attempts")


def test_a_permanent_refusal_fails_at_once_and_is_reported(queued, service):
    service.callback_url = "https://marketplace.example/hooks"
    service.save()
    failure_inject(path="/sms/", mode="permanent", count=1)
    assert message_send(message_id=queued.pk).result == "failed"
    queued.refresh_from_db()
    assert queued.status == "failed" and "permanent" in queued.last_error
    [report] = CallbackDelivery.objects.filter(event="message.status")
    assert report.payload["data"]["message"]["status"] == "failed"


def test_a_recipient_who_opted_out_since_gets_nothing(queued, service):
    number_opt_out(service=service, real_number=BOB)
    assert message_send(message_id=queued.pk).result == "failed"
    queued.refresh_from_db()
    assert queued.reason == "recipient_opted_out"
    assert not SandboxMessage.objects.exists()


def test_a_lost_task_is_redriven_a_minute_after_the_text_was_due(queued, django_capture_on_commit_callbacks):
    assert outbox_redrive()["messages"] == 0
    Message.objects.filter(pk=queued.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=2))
    assert outbox_redrive()["messages"] == 1
    queued.refresh_from_db()
    assert queued.status == "sent"


def test_a_retry_waiting_for_later_is_not_redriven(queued):
    Message.objects.filter(pk=queued.pk).update(attempts=1, next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert outbox_redrive()["messages"] == 0


def test_staff_retry_a_failed_text_while_the_conversation_is_open(queued, django_capture_on_commit_callbacks):
    Message.objects.filter(pk=queued.pk).update(status="failed", attempts=3, last_error="boom")
    queued.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert message_retry(message=queued)
    queued.refresh_from_db()
    assert queued.status == "sent" and queued.attempts == 1
    assert not message_retry(message=queued)  # sent: nothing to retry


def test_no_staff_retry_once_the_conversation_ended(queued):
    Message.objects.filter(pk=queued.pk).update(status="failed")
    conversation_close(conversation=queued.conversation)
    queued.refresh_from_db()
    assert not message_retry(message=queued)


def test_a_kept_text_is_never_sent_by_a_retry(service):
    kept = Message.objects.create(kind="inbound", status="received", service=service, from_number=ALICE, text="hi")
    Message.objects.filter(pk=kept.pk).update(status="failed")
    kept.refresh_from_db()
    assert not message_retry(message=kept)
    assert message_send(message_id=kept.pk).result == "skipped"


def test_a_receipt_before_the_send_was_recorded_matches_by_client_ref(queued):
    receipt = {"messageId": "0A00000099", "msisdn": BOB, "status": "delivered", "client-ref": f"message-{queued.pk}"}
    assert message_receipt_apply(params=receipt) == queued
    queued.refresh_from_db()
    assert (queued.status, queued.message_id) == ("delivered", "0A00000099")
    # The send's own record then keeps the receipt's status.
    assert message_send(message_id=queued.pk).result == "skipped"


def test_a_receipt_for_another_number_is_ignored(queued):
    Message.objects.filter(pk=queued.pk).update(status="sent", message_id="0A1")
    assert message_receipt_apply(params={"messageId": "0A1", "msisdn": ALICE, "status": "delivered"}) is None
    queued.refresh_from_db()
    assert queued.status == "sent"


def test_a_receipt_for_a_held_text_changes_nothing(queued):
    Message.objects.filter(pk=queued.pk).update(status="held")
    message_receipt_apply(params={"msisdn": BOB, "status": "delivered", "client-ref": f"message-{queued.pk}"})
    queued.refresh_from_db()
    assert queued.status == "held"
