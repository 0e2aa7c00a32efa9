"""The SMS outbox: texts, sending through the sandbox, retries, permanent errors, enqueue on commit."""

from __future__ import annotations

from unittest import mock

import pytest
from celery.exceptions import Retry
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from proxy import tasks
from proxy.delivery.sms import notification_send
from proxy.models import Conversation, Notification, Participant
from proxy.notifications import SMS, notification_text_render
from proxy.outbox import OutboxKind
from proxy.services import conversation_close, conversation_create
from telephony.models import SandboxMessage
from telephony.sandbox.engine import failure_inject
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory

pytestmark = pytest.mark.django_db


def _create(api, **extra):
    body = {"participants": [{"number": ALICE, "name": "Alice"}, {"number": BOB, "name": "Bob"}], **extra}
    return api.post("/api/v1/conversations", body, format="json")


def _time_passes() -> None:
    """Every retry's time has come."""
    Notification.objects.exclude(next_attempt_at=None).update(next_attempt_at=timezone.now())


def _pair(service=None, **names):
    conversation = ConversationFactory(service=service or ServiceFactory())
    a = ParticipantFactory(conversation=conversation, real_number=ALICE, name=names.get("a", "Alice"), position=0)
    b = ParticipantFactory(conversation=conversation, real_number=BOB, name=names.get("b", "Bob"), position=1)
    return conversation, a, b


# --- Text --------------------------------------------------------------------------------------


def test_text_names_the_counterpart_and_the_recipients_proxy_number():
    _, alice, bob = _pair(ServiceFactory(name="Acme Rides"))
    text = notification_text_render(service=alice.service, recipient=alice, counterpart=bob)
    assert text == "Acme Rides: to reach Bob, call +1 201-555-" + alice.proxy_number_id[-4:] + "."
    assert ALICE not in text.replace(" ", "").replace("-", "")
    assert BOB not in text.replace(" ", "").replace("-", "")


def test_text_follows_the_service_language_with_the_default_template():
    _, alice, bob = _pair(ServiceFactory(name="Acme", language="fr-FR"), b="")
    text = notification_text_render(service=alice.service, recipient=alice, counterpart=bob)
    assert text.startswith("Acme : pour joindre votre interlocuteur, appelez le +1 201")


def test_custom_template_is_used_and_unknown_placeholders_stay():
    service = ServiceFactory(sms_template="Hi {name}, {counterpart} is on {proxy_number} {oops}")
    _, alice, bob = _pair(service)
    text = notification_text_render(service=service, recipient=alice, counterpart=bob)
    assert text.startswith("Hi Alice, Bob is on +1 201") and text.endswith("{oops}")


def test_malformed_template_falls_back_to_the_default():
    service = ServiceFactory(name="Acme", sms_template="Broken {counterpart")
    _, alice, bob = _pair(service)
    assert notification_text_render(service=service, recipient=alice, counterpart=bob).startswith("Acme: to reach Bob")


@pytest.mark.parametrize("name", ["+1 (201) 555-0102", "Bob 201 555 0102", "2015550102"])
def test_a_real_number_given_as_a_name_never_reaches_the_text(name):
    _, alice, bob = _pair(b=name)
    text = notification_text_render(service=alice.service, recipient=alice, counterpart=bob)
    assert "0102" not in text
    assert "…" in text


def test_unicode_names_are_sent_as_unicode(api, pool):
    with_names = {"participants": [{"number": ALICE, "name": "Zoë 👋"}, {"number": BOB, "name": "Bob"}]}
    response = api.post("/api/v1/conversations", with_names, format="json")
    assert response.status_code == 201
    # Outside a captured commit nothing was sent yet; send now.
    notification = Notification.objects.get(participant__real_number=BOB)
    assert notification_send(notification_id=notification.pk).result == "done"
    message = SandboxMessage.objects.get(to_number=BOB)
    assert message.message_type == "unicode"
    assert "Zoë 👋" in message.text


# --- Creating and sending ----------------------------------------------------------------------


def test_conversation_over_rest_sends_two_sms_from_the_proxy_numbers(api, pool, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _create(api)
    assert response.status_code == 201
    messages = {m.to_number: m for m in SandboxMessage.objects.all()}
    assert set(messages) == {ALICE, BOB}
    for participant in Participant.objects.all():
        message = messages[participant.real_number]
        assert message.from_number == participant.proxy_number_id
        assert ALICE not in message.text and BOB not in message.text
        notification = participant.notifications.order_by("-created_at", "-pk").first()
        assert notification.status == Notification.Status.SENT
        assert notification.message_id == message.message_id
        assert notification.attempts == 1
        assert participant.validation == Participant.Validation.VALID
    detail = api.get(f"/api/v1/conversations/{response.json()['id']}").json()
    assert [p["notification"]["status"] for p in detail["participants"]] == ["sent", "sent"]


def test_notify_false_sends_nothing(api, pool, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _create(api, notify=False)
    assert response.status_code == 201
    assert not Notification.objects.exists()
    assert not SandboxMessage.objects.exists()
    assert [p["notification"] for p in response.json()["participants"]] == [None, None]


def test_a_rolled_back_creation_sends_nothing(service, pool, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
        raise RuntimeError("the request failed after creating the conversation")
    assert callbacks == []
    assert not Conversation.objects.exists()
    assert not Notification.objects.exists()
    assert not SandboxMessage.objects.exists()


def test_nothing_is_sent_before_commit(service, pool, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
        assert Notification.objects.filter(status=Notification.Status.QUEUED).count() == 2
        assert not SandboxMessage.objects.exists()
    assert callbacks  # queued for after the commit, not run inside it


# --- Retries and permanent errors --------------------------------------------------------------


def _queued(service, pool) -> Notification:
    conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])
    return Notification.objects.get(to_number=ALICE)


def test_throttling_is_retried_then_sent(service, pool):
    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="throttle", count=2)

    for attempt in (1, 2):
        outcome = notification_send(notification_id=notification.pk)
        assert outcome.result == "retry" and 1 <= outcome.retry_in <= 600
        notification.refresh_from_db()
        assert notification.status == Notification.Status.QUEUED
        assert notification.attempts == attempt
        assert "Throughput" in notification.last_error
        # Not due before its backoff: an early duplicate message does nothing.
        assert notification.next_attempt_at > timezone.now() and notification.sending_since is None
        assert notification_send(notification_id=notification.pk).result == "skipped"
        _time_passes()

    assert notification_send(notification_id=notification.pk).result == "done"
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT and notification.last_error == ""
    assert SandboxMessage.objects.filter(to_number=ALICE).count() == 1


def test_internal_errors_are_retried(service, pool):
    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="5xx", count=1)
    assert notification_send(notification_id=notification.pk).result == "retry"
    _time_passes()
    assert notification_send(notification_id=notification.pk).result == "done"


def test_permanent_errors_fail_at_once_without_retry(service, pool):
    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="permanent", count=1)
    outcome = notification_send(notification_id=notification.pk)
    assert outcome.result == "failed" and outcome.retry_in is None
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert "barred" in notification.last_error
    assert notification.attempts == 1
    # A later run (a redrive, a duplicate message) leaves a failed row alone.
    assert notification_send(notification_id=notification.pk).result == "skipped"
    assert not SandboxMessage.objects.filter(to_number=ALICE).exists()


def test_retries_are_bounded(service, pool):
    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="throttle", count=SMS.retry.max_attempts + 5)
    results = []
    for _ in range(SMS.retry.max_attempts):
        results.append(notification_send(notification_id=notification.pk).result)
        _time_passes()
    assert results == ["retry"] * (SMS.retry.max_attempts - 1) + ["failed"]
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.last_error.startswith(f"Gave up after {SMS.retry.max_attempts} attempts")


def test_an_unexpected_error_leaves_the_row_queued_for_retry(service, pool):
    notification = _queued(service, pool)
    with mock.patch("telephony.sandbox.provider.SandboxProvider.send_sms", side_effect=KeyError("boom")):
        outcome = notification_send(notification_id=notification.pk)
    assert outcome.result == "retry"
    notification.refresh_from_db()
    assert notification.status == Notification.Status.QUEUED and "KeyError" in notification.last_error


def test_a_conversation_that_ended_first_gets_no_sms(service, pool):
    notification = _queued(service, pool)
    conversation_close(conversation=notification.participant.conversation)
    assert notification_send(notification_id=notification.pk).result == "failed"
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED and "ended" in notification.last_error
    assert not SandboxMessage.objects.exists()


def test_a_sent_row_is_never_sent_again(service, pool):
    notification = _queued(service, pool)
    assert notification_send(notification_id=notification.pk).result == "done"
    assert notification_send(notification_id=notification.pk).result == "skipped"
    assert SandboxMessage.objects.filter(to_number=ALICE).count() == 1


def test_two_workers_holding_the_same_row_send_once(service, pool):
    notification = _queued(service, pool)
    # The other worker claimed the attempt between our read and our claim.
    real_claim = OutboxKind.claim

    def racing_claim(kind, key, *, now, **changes):
        if kind is SMS:
            real_claim(kind, key, now=now, attempts=F("attempts") + 1, sending_since=now)
        return real_claim(kind, key, now=now, **changes)

    with mock.patch.object(OutboxKind, "claim", autospec=True, side_effect=racing_claim):
        outcome = notification_send(notification_id=notification.pk)
    assert outcome.result == "skipped"
    assert not SandboxMessage.objects.exists()


def test_task_asks_celery_for_a_retry_with_backoff(service, pool):
    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="throttle", count=1)
    with mock.patch.object(tasks.send_notification, "retry", return_value=Retry()) as retry, pytest.raises(Retry):
        tasks.send_notification.run(notification.pk)
    countdown = retry.call_args.kwargs["countdown"]
    assert 1 <= countdown <= 10


def test_eager_task_leaves_the_retry_to_the_redrive(service, pool):
    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="throttle", count=1)
    tasks.send_notification.apply(args=[notification.pk])
    notification.refresh_from_db()
    assert notification.status == Notification.Status.QUEUED and notification.attempts == 1


def test_staff_can_retry_a_failed_sms(service, pool, django_capture_on_commit_callbacks):
    from proxy.notifications import notification_retry

    notification = _queued(service, pool)
    failure_inject(path="/sms/", mode="permanent", count=1)
    notification_send(notification_id=notification.pk)
    notification.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_retry(notification=notification) is True
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("sent", 1)
    assert notification_retry(notification=notification) is False  # only failed rows


def test_no_retry_once_the_conversation_ended(service, pool):
    from proxy.notifications import notification_retry

    notification = _queued(service, pool)
    conversation_close(conversation=notification.participant.conversation)
    notification_send(notification_id=notification.pk)
    notification.refresh_from_db()
    assert notification.status == "failed"
    assert notification_retry(notification=notification) is False
