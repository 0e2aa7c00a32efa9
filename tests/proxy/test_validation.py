"""Participant validation: what a Number Insight answer does to a conversation and its SMS."""

from __future__ import annotations

from unittest import mock

import pytest

from proxy import tasks
from proxy.delivery.validation import conversation_numbers_validate
from proxy.models import Conversation, Notification, Participant
from proxy.services import conversation_create
from telephony.models import SandboxMessage
from telephony.sandbox.engine import failure_inject
from tests.conftest import ALICE, BOB
from virtual_numbers.models import NumberCheck

pytestmark = pytest.mark.django_db


def _open(service):
    return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}])


def test_valid_numbers_are_recorded_on_the_participants(service, pool):
    conversation = _open(service)
    outcome = conversation_numbers_validate(conversation_id=conversation.pk, give_up=False)
    assert outcome.valid and not outcome.retry
    validations = set(conversation.participants.values_list("validation", flat=True))
    assert validations == {Participant.Validation.VALID}
    assert all(conversation.participants.values_list("number_type", flat=True))


def test_an_invalid_number_closes_the_conversation_and_no_sms_goes_out(
    api, service, pool, django_capture_on_commit_callbacks
):
    # Number Insight said so earlier today: the cache answers.
    NumberCheck.objects.create(number=BOB, valid=False, raw={"status": 3})
    body = {"participants": [{"number": ALICE}, {"number": BOB}]}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/conversations", body, format="json")
    assert response.status_code == 201
    conversation = Conversation.objects.get(pk=response.json()["id"])
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.closed_reason == "invalid_number"
    assert conversation.participants.get(real_number=BOB).validation == Participant.Validation.INVALID
    assert not SandboxMessage.objects.exists()
    statuses = dict(Notification.objects.values_list("to_number", "status"))
    assert statuses == {ALICE: "failed", BOB: "failed"}
    assert Notification.objects.get(to_number=BOB).last_error == "Not sent: the number is not valid."
    detail = api.get(f"/api/v1/conversations/{conversation.pk}").json()
    assert detail["status"] == "closed"
    assert [p["notification"]["status"] for p in detail["participants"]] == ["failed", "failed"]


def test_a_temporary_failure_asks_for_a_retry_and_keeps_numbers_pending(service, pool):
    conversation = _open(service)
    failure_inject(path="/ni/", mode="throttle", count=10)
    outcome = conversation_numbers_validate(conversation_id=conversation.pk, give_up=False)
    assert outcome.retry
    assert set(conversation.participants.values_list("validation", flat=True)) == {"pending"}


def test_giving_up_marks_numbers_unknown_and_the_sms_still_goes(service, pool, django_capture_on_commit_callbacks):
    conversation = _open(service)
    failure_inject(path="/ni/", mode="5xx", count=10)
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.validate_conversation_numbers.apply(args=[str(conversation.pk)]).get()
    assert result == "valid"
    assert set(conversation.participants.values_list("validation", flat=True)) == {"unknown"}
    assert SandboxMessage.objects.count() == 2


def test_validation_task_retries_on_a_worker(service, pool):
    conversation = _open(service)
    failure_inject(path="/ni/", mode="throttle", count=10)
    from celery.exceptions import Retry

    with (
        mock.patch.object(tasks.validate_conversation_numbers, "retry", return_value=Retry()) as retry,
        pytest.raises(Retry),
    ):
        tasks.validate_conversation_numbers.run(str(conversation.pk))
    assert 1 <= retry.call_args.kwargs["countdown"] <= 5
    assert not SandboxMessage.objects.exists()


def test_a_vanished_conversation_is_no_error(db):
    import uuid

    outcome = conversation_numbers_validate(conversation_id=uuid.uuid4(), give_up=True)
    assert not outcome.found
