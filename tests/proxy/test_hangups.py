"""Closing a conversation hangs up its calls in progress, through the outbox, with the sandbox playing Vonage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from proxy import tasks
from proxy.delivery.hangups import call_hang_up
from proxy.hangups import HANGUPS
from proxy.models import Call, CallHangup, Conversation
from proxy.services import conversation_close, conversations_expire_due
from telephony.models import SandboxCall
from telephony.sandbox.engine import failure_inject
from telephony.sandbox.voice import call_record

pytestmark = pytest.mark.django_db


def _leg(conversation, uuid: str, *, status: str = "answered", sandbox_status: str | None = None, **fields) -> Call:
    """A leg in progress, as our events left it, and the same leg in the sandbox's call table."""
    call_record(
        uuid=uuid,
        conversation_uuid="CON-1",
        direction=fields.get("direction", "inbound"),
        from_number="12015550101",
        to_number="12015550200",
        status=sandbox_status or status,
        start_time=timezone.now(),
    )
    return Call.objects.create(
        uuid=uuid,
        conversation_uuid="CON-1",
        conversation=conversation,
        service=conversation.service,
        status=status,
        **fields,
    )


def test_closing_over_the_api_hangs_up_each_leg_in_progress(api, conversation, django_capture_on_commit_callbacks):
    inbound = _leg(conversation, "leg-in")
    outbound = _leg(conversation, "leg-out", direction="outbound", sandbox_status="completed")
    finished = _leg(conversation, "leg-done", status="completed", ended_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/conversations/{conversation.pk}").status_code == 204
    hangups = {h.call.uuid: h for h in CallHangup.objects.select_related("call")}
    assert set(hangups) == {"leg-in", "leg-out"}  # not the leg that had ended
    assert hangups["leg-in"].status == CallHangup.Status.DONE and hangups["leg-in"].attempts == 1
    # Vonage refuses a leg that already ended (the sandbox's 400): nothing to retry.
    assert hangups["leg-out"].status == CallHangup.Status.NOT_IN_PROGRESS
    played = SandboxCall.objects.get(uuid="leg-in")
    assert played.status == "completed" and played.actions == [{"action": "hangup"}]
    assert finished.pk not in {h.call_id for h in hangups.values()}
    assert inbound.pk and outbound.pk


def test_the_request_itself_does_not_hang_up(api, conversation, django_capture_on_commit_callbacks):
    _leg(conversation, "leg-in")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        api.delete(f"/api/v1/conversations/{conversation.pk}")
    assert SandboxCall.objects.get(uuid="leg-in").status == "answered"
    assert CallHangup.objects.get().status == CallHangup.Status.PENDING
    assert queued  # the task is queued after commit


def test_the_expiry_sweep_hangs_up_too(conversation, django_capture_on_commit_callbacks):
    _leg(conversation, "leg-in")
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert conversations_expire_due() == 1
    assert SandboxCall.objects.get(uuid="leg-in").status == "completed"
    assert CallHangup.objects.get().status == CallHangup.Status.DONE


def test_stale_legs_are_not_hung_up(conversation, django_capture_on_commit_callbacks):
    _leg(conversation, "leg-old", created_at=timezone.now() - timedelta(hours=4))
    with django_capture_on_commit_callbacks(execute=True):
        conversation_close(conversation=conversation)
    assert not CallHangup.objects.exists()


def test_a_temporary_failure_is_retried_then_redriven(conversation, django_capture_on_commit_callbacks):
    _leg(conversation, "leg-in")
    failure_inject(path="/v1/calls", mode="5xx", count=1)
    with django_capture_on_commit_callbacks(execute=True):
        conversation_close(conversation=conversation)
    hangup = CallHangup.objects.get()
    assert hangup.status == CallHangup.Status.PENDING and hangup.attempts == 1 and hangup.last_error
    assert call_hang_up(hangup_id=hangup.pk).result == "skipped"  # its backoff has not passed
    later = hangup.next_attempt_at + timedelta(minutes=1)
    assert HANGUPS.lost(later, 10) == [hangup.pk]
    assert call_hang_up(hangup_id=hangup.pk, now=hangup.next_attempt_at).result == "done"
    hangup.refresh_from_db()
    assert hangup.status == CallHangup.Status.DONE and hangup.attempts == 2
    assert SandboxCall.objects.get(uuid="leg-in").status == "completed"


def test_the_redrive_knows_the_hangup_kind(conversation):
    _leg(conversation, "leg-in")
    CallHangup.objects.create(call=Call.objects.get(), created_at=timezone.now() - timedelta(minutes=5))
    counts = tasks.outbox_redrive.apply().get()
    assert counts["hangups"] == 1
    assert CallHangup.objects.get().status == CallHangup.Status.DONE


def test_the_admin_close_hangs_up(admin_client, conversation, django_capture_on_commit_callbacks):
    _leg(conversation, "leg-in")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/proxy/conversation/{conversation.pk}/close/")
    assert response.status_code == 302
    assert SandboxCall.objects.get(uuid="leg-in").status == "completed"
