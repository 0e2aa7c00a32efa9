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
    assert delays == sorted(delays) and delays[-1] > delays[0]
    Message.objects.filter(pk=queued.pk).update(attempts=MESSAGES.retry.max_attempts, last_error="throttled")
    assert message_send(message_id=queued.pk).result == "failed"
    queued.refresh_from_db()
    assert queued.status == "failed"
    assert queued.last_error.startswith(f"Gave up after {MESSAGES.retry.max_attempts} attempts")


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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_holding_the_same_text_send_it_once(queued):
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite admits one writer at a time, so nothing runs concurrently")
    barrier = threading.Barrier(4)
    results: list[str] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(message_send(message_id=queued.pk).result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["done", "skipped", "skipped", "skipped"]
    assert SandboxMessage.objects.count() == 1
    queued.refresh_from_db()
    assert (queued.status, queued.attempts) == ("sent", 1)


# --- The drain: fresh texts wake one sender for all of them --------------------------------------


@pytest.fixture
def published(monkeypatch):
    """What the outbox publishes, instead of running it."""
    from proxy.message_outbox import messages_wake_taken

    messages_wake_taken()
    calls: list[tuple] = []
    monkeypatch.setattr(
        "proxy.message_outbox.queue_now", lambda name, *args, countdown=None: calls.append((name, args, countdown))
    )
    monkeypatch.setattr(
        "proxy.delivery.messages.queue_now", lambda name, *args, countdown=None: calls.append((name, args, countdown))
    )
    yield calls
    messages_wake_taken()


def test_waking_is_coalesced_until_a_drain_takes_the_wake_up(published):
    from proxy.message_outbox import DRAIN_TASK, messages_wake, messages_wake_taken

    messages_wake()
    messages_wake()
    assert published == [(DRAIN_TASK, (), None)]
    messages_wake_taken()  # a drain starts: the next text wakes another
    messages_wake()
    assert len(published) == 2


def test_a_drain_sends_every_due_text_and_leaves_later_ones(service, pool, published):
    from proxy.delivery.messages import messages_drain

    conversation, _, bob = alice_and_bob(service, pool)
    now = timezone.now()

    def text(words: str, due_in: timedelta) -> Message:
        return Message.objects.create(
            kind="relay",
            service=service,
            conversation=conversation,
            to_participant=bob,
            from_number=bob.proxy_number_id,
            to_number=BOB,
            text=words,
            next_attempt_at=now + due_in,
        )

    due = [text(f"due {n}", -timedelta(seconds=n)) for n in range(3)]
    later = text("later", timedelta(minutes=5))
    assert messages_drain() == 3
    assert sorted(SandboxMessage.objects.values_list("text", flat=True)) == ["due 0", "due 1", "due 2"]
    # Oldest due first.
    assert list(SandboxMessage.objects.order_by("pk").values_list("text", flat=True)) == ["due 2", "due 1", "due 0"]
    assert Message.objects.get(pk=later.pk).status == "queued"
    assert {m.status for m in Message.objects.filter(pk__in=[m.pk for m in due])} == {"sent"}
    assert published == []


def test_a_drain_gives_a_text_that_fails_for_now_its_own_retry(queued, published):
    from proxy.delivery.messages import messages_drain
    from proxy.message_outbox import SEND_TASK

    failure_inject(path="/sms/", mode="throttle", count=1)
    assert messages_drain() == 1
    [(name, args, countdown)] = published
    assert (name, args) == (SEND_TASK, (queued.pk,)) and countdown >= 1
    queued.refresh_from_db()
    assert queued.status == "queued" and queued.next_attempt_at > timezone.now()


def test_a_drain_past_its_budget_hands_over(queued, published):
    from proxy.delivery.messages import messages_drain
    from proxy.message_outbox import DRAIN_TASK

    assert messages_drain(budget_seconds=0) == 0
    assert published == [(DRAIN_TASK, (), None)]
    queued.refresh_from_db()
    assert queued.status == "queued"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_drains_side_by_side_send_each_text_once(service, pool):
    import threading

    from django.db import connection, connections

    from proxy.delivery.messages import messages_drain

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite admits one writer at a time, so nothing runs concurrently")
    conversation, _, bob = alice_and_bob(service, pool)
    Message.objects.bulk_create(
        Message(kind="relay", service=service, conversation=conversation, to_participant=bob,
                from_number=bob.proxy_number_id, to_number=BOB, text=f"text {n}", next_attempt_at=timezone.now())
        for n in range(30)
    )  # fmt: skip
    barrier = threading.Barrier(3)
    tried: list[int] = []

    def drain() -> None:
        try:
            barrier.wait(timeout=10)
            tried.append(messages_drain())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(tried) == 30
    assert SandboxMessage.objects.count() == 30
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_with_redis_down_the_webhook_wakes_nothing_and_the_redrive_sends(queued, published, monkeypatch):
    from proxy.message_outbox import messages_wake

    def down():
        raise ConnectionError("Redis is down")

    with monkeypatch.context() as patch:
        patch.setattr("proxy.message_outbox._flag_raise", down)
        messages_wake()
    assert published == []
    Message.objects.filter(pk=queued.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=2))
    assert outbox_redrive()["messages"] == 1
    queued.refresh_from_db()
    assert queued.status == "sent"


def test_with_redis_known_down_the_webhook_does_not_even_try(published, monkeypatch):
    """The breaker the rate limit and task queuing share: while it is open, no inbound
    webhook waits for Redis's timeouts to wake a drain."""
    from config.redis_guard import REDIS
    from proxy.message_outbox import messages_wake

    tried: list[bool] = []
    monkeypatch.setattr("proxy.message_outbox._flag_raise", lambda: tried.append(True) or True)
    REDIS.failed(ConnectionError("Redis is down"))
    messages_wake()
    assert tried == [] and published == []
    REDIS.succeeded()
    messages_wake()
    assert tried == [True] and [name for name, *_ in published] == ["proxy.tasks.send_messages"]
