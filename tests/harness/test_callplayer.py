"""The call player in-process (django.test.Client) against the real webhooks."""

from __future__ import annotations

import pytest

from harness.callplayer import ClientTransport, call_play
from proxy.models import Call, Recording, Transcript
from proxy.services import conversation_create
from telephony.models import SandboxCall, SandboxRecording
from tests.conftest import ALICE, BOB, CAROL

pytestmark = pytest.mark.django_db

SECRET = "player-test-signature-secret-32-bytes-long"


@pytest.fixture
def conversation(service, pool, settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)


def _proxy_of(conversation, number):
    return conversation.participants.get(real_number=number).proxy_number_id


def test_answered_call_connects_the_other_party_with_their_proxy_number_as_caller_id(conversation):
    alice_dials = _proxy_of(conversation, ALICE)
    result = call_play(transport=ClientTransport(), caller=ALICE, proxy_number=alice_dials, duration=42, secret=SECRET)
    assert result.ok, result.transcript
    leg = result.connected
    assert leg is not None
    assert leg.to_number == BOB
    assert leg.from_number == _proxy_of(conversation, BOB)
    completed = Call.objects.get(uuid=leg.uuid)
    assert completed.status == "completed"
    assert completed.duration == 42
    assert completed.conversation_id == conversation.id
    assert SandboxCall.objects.get(uuid=leg.uuid).duration == 42
    assert any("caller hears" in line or "connect" in line for line in result.transcript)


@pytest.mark.parametrize("outcome", ["busy", "unanswered", "failed"])
def test_unsuccessful_outcomes_are_reported_and_the_caller_hears_a_message(conversation, outcome):
    result = call_play(
        transport=ClientTransport(),
        caller=ALICE,
        proxy_number=_proxy_of(conversation, ALICE),
        outcome=outcome,
        secret=SECRET,
    )
    assert result.ok, result.transcript
    assert Call.objects.get(uuid=result.connected.uuid).status == outcome
    # The synchronous connect's event answered with an NCCO that the player then ran.
    assert len(result.nccos) == 2
    assert result.nccos[1][0]["action"] == "talk"


def test_unknown_caller_hears_a_message_and_nobody_is_rung(conversation):
    result = call_play(
        transport=ClientTransport(), caller=CAROL, proxy_number=_proxy_of(conversation, ALICE), secret=SECRET
    )
    assert result.ok
    assert result.connected is None
    assert [a["action"] for a in result.nccos[0]] == ["talk"]


def test_wrong_signature_secret_is_rejected_and_the_player_fails(conversation):
    result = call_play(
        transport=ClientTransport(),
        caller=ALICE,
        proxy_number=_proxy_of(conversation, ALICE),
        secret="a-wrong-signature-secret-also-32-bytes-long",
    )
    assert not result.ok
    assert result.exit_code != 0


def test_recorded_conversation_posts_a_record_event_with_a_sandbox_file(service, pool, settings):
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    conversation = conversation_create(
        service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False, record=True
    )
    result = call_play(
        transport=ClientTransport(), caller=ALICE, proxy_number=_proxy_of(conversation, ALICE), secret=SECRET
    )
    assert result.ok, result.transcript
    recording = Recording.objects.get()
    file_id = recording.recording_url.rsplit("/", 1)[1]
    assert SandboxRecording.objects.filter(pk=file_id).exists()


def test_a_recorded_call_tells_both_sides_then_copies_the_recording_and_its_transcript(
    service, pool, settings, tmp_path, django_capture_on_commit_callbacks
):
    """The sandbox plays the whole story: the caller's notice, the callee's notice through
    onAnswer before being bridged, the record event, then Vonage's transcript."""
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.MEDIA_ROOT = tmp_path
    service.record_notice = "This call is recorded for your safety."
    service.transcribe = True
    service.save()
    conversation = conversation_create(
        service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False, record=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = call_play(
            transport=ClientTransport(), caller=ALICE, proxy_number=_proxy_of(conversation, ALICE), secret=SECRET
        )
    assert result.ok, result.transcript
    lines = result.transcript
    caller_notice = lines.index('  caller hears: "This call is recorded for your safety."')
    recording_starts = lines.index("  recording starts")
    callee_notice = lines.index(f'  {BOB} hears, before being connected: "This call is recorded for your safety."')
    bridged = next(i for i, line in enumerate(lines) if line.startswith(f"  {BOB} answers; they talk"))
    assert caller_notice < recording_starts < callee_notice < bridged
    assert any(step.path == "/webhooks/record-notice" and step.status == 200 for step in result.steps)

    recording, transcript = Recording.objects.get(), Transcript.objects.get()
    assert recording.recording_uuid == transcript.recording_uuid
    assert (recording.status, transcript.status) == ("downloaded", "downloaded")
    assert recording.conversation_id == transcript.conversation_id == conversation.id
    with transcript.file.open("rb") as text:
        assert b"at the front door" in text.read()
    assert any("transcript, callee: Yes, I will be down" in line for line in lines)


def test_a_call_that_does_not_record_fetches_no_notice(conversation):
    result = call_play(
        transport=ClientTransport(), caller=ALICE, proxy_number=_proxy_of(conversation, ALICE), secret=SECRET
    )
    assert result.ok
    assert not any(step.path == "/webhooks/record-notice" for step in result.steps)
    assert not any("before being connected" in line for line in result.transcript)


def test_the_player_reports_what_the_intercept_hook_decided(conversation, service, settings):
    from tests.hook_server import Reply, hook_server

    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    with hook_server() as hook:
        hook.reply = Reply(204)
        service.intercept_url = hook.url
        service.save()
        result = call_play(
            transport=ClientTransport(), caller=ALICE, proxy_number=_proxy_of(conversation, ALICE), secret=SECRET
        )
    assert result.ok, result.transcript
    assert result.hook.startswith("call.intercept: allowed (HTTP 204")
    assert any(line.startswith("  marketplace hook call.intercept: allowed") for line in result.transcript)
    assert result.connected is not None and result.connected.to_number == BOB
