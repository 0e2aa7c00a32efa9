"""Copying recordings and transcripts into storage: retries, give-ups, leases, the redrive.

Nothing stays pending for ever, nothing comes from another host, and a failure is left
for staff to see (status ``failed`` with ``last_error``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from proxy import tasks
from proxy.delivery.recordings import UNKNOWN_CALL, recording_download, transcript_download
from proxy.models import Call, CopiedFile, Recording, Transcript
from proxy.outbox import LEASE, REDRIVE_GRACE
from proxy.recordings import RECORDINGS, TRANSCRIPTS, recording_announce
from telephony.provider import ProviderError
from telephony.sandbox.engine import failure_inject, recording_create, transcript_create

pytestmark = pytest.mark.django_db

MAX = RECORDINGS.retry.max_attempts


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def call(conversation) -> Call:
    return Call.objects.create(
        uuid="leg-1", conversation_uuid="CON-1", conversation=conversation, service=conversation.service
    )


def _recording(call: Call | None = None, **fields) -> Recording:
    sandbox = recording_create(call_uuid="leg-1")
    values = {
        "recording_uuid": "rec-1",
        "recording_url": f"https://api.nexmo.com/v1/files/{sandbox.id}",
        "conversation_uuid": "CON-1",
        "call": call,
        "conversation": call.conversation if call else None,
        **fields,
    }
    return Recording.objects.create(**values)


def test_a_recording_is_copied_into_storage(call):
    recording = _recording(call)
    assert recording_download(recording_id=recording.pk).result == "done"
    recording.refresh_from_db()
    assert recording.status == Recording.Status.DOWNLOADED
    assert recording.file.name.startswith("recordings/") and recording.file.name.endswith("rec-1.mp3")
    assert recording.file.read().startswith(b"ID3")
    assert (recording.attempts, recording.next_attempt_at, recording.size) == (1, None, recording.file.size)


def test_announcing_queues_the_copy(call, django_capture_on_commit_callbacks):
    sandbox = recording_create(call_uuid="leg-1")
    with django_capture_on_commit_callbacks(execute=True):
        recording_announce(
            recording_uuid="rec-q",
            url=f"https://api.nexmo.com/v1/files/{sandbox.id}",
            trusted=True,
            conversation_uuid="CON-1",
        )
    assert Recording.objects.get().status == Recording.Status.DOWNLOADED


def test_retries_with_backoff_then_fails_for_staff_to_see(call):
    recording = _recording(call)
    failure_inject(path="/v1/files", mode="5xx", count=MAX + 1)
    now = timezone.now()
    results = []
    for _ in range(MAX):
        outcome = recording_download(recording_id=recording.pk, now=now)
        results.append(outcome.result)
        if outcome.result == "retry":
            assert outcome.retry_in >= 1
            recording.refresh_from_db()
            assert recording.next_attempt_at > now and "500" in recording.last_error
            now = recording.next_attempt_at  # the retry runs when its backoff is over
    assert results == ["retry"] * (MAX - 1) + ["failed"]
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED and "500" in recording.last_error


@pytest.mark.parametrize("mode", ["timeout", "throttle"])
def test_timeouts_and_throttling_are_retried(call, mode):
    recording = _recording(call)
    failure_inject(path="/v1/files", mode=mode, count=1, hold_seconds=0.1)
    assert recording_download(recording_id=recording.pk).result == "retry"
    assert recording_download(recording_id=recording.pk, now=timezone.now() + timedelta(hours=1)).result == "done"


def test_a_missing_file_fails_without_retry(call):
    recording = _recording(call, recording_url="https://api.nexmo.com/v1/files/00000000-0000-0000-0000-000000000000")
    assert recording_download(recording_id=recording.pk).result == "failed"
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED and recording.attempts == 1


def _stored(storage) -> list[Path]:
    return [path for path in storage.rglob("*") if path.is_file()]


def test_an_oversized_file_fails_at_once(call, settings, storage):
    settings.RECORDING_MAX_BYTES = 10
    recording = _recording(call)
    assert recording_download(recording_id=recording.pk).result == "failed"
    recording.refresh_from_db()
    assert "larger than 10 bytes" in recording.last_error
    assert _stored(storage) == []


def test_a_foreign_url_in_a_row_is_never_fetched(call, monkeypatch):
    from telephony.sandbox import provider

    monkeypatch.setattr(provider.SandboxProvider, "_send", lambda *a, **k: pytest.fail("fetched"))
    recording = _recording(call, recording_url="https://attacker.example/v1/files/x")
    assert recording_download(recording_id=recording.pk).result == "failed"
    assert "Refusing to fetch" in Recording.objects.get().last_error


def test_an_unknown_call_is_retried_then_linked_once_it_is_known(conversation):
    recording = _recording(None)
    now = timezone.now()
    outcome = recording_download(recording_id=recording.pk, now=now)
    assert outcome.result == "retry"
    recording.refresh_from_db()
    assert recording.last_error == UNKNOWN_CALL and recording.status == Recording.Status.PENDING
    # The call's events arrive after the record event: the next attempt finds it.
    call = Call.objects.create(uuid="leg-1", conversation_uuid="CON-1", conversation=conversation)
    assert recording_download(recording_id=recording.pk, now=now + timedelta(hours=1)).result == "done"
    recording.refresh_from_db()
    assert (recording.call, recording.conversation, recording.status) == (call, conversation, "downloaded")


def test_an_unknown_call_fails_once_its_attempts_are_spent(db, storage):
    recording = _recording(None)
    # Each attempt once the previous one's backoff is over.
    results = [
        recording_download(recording_id=recording.pk, now=timezone.now() + timedelta(hours=n)).result
        for n in range(MAX)
    ]
    assert results[-1] == "failed"
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED and recording.last_error == UNKNOWN_CALL
    assert _stored(storage) == []


def test_a_storage_outage_is_retried(call, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("bucket unreachable")

    monkeypatch.setattr(default_storage.__class__, "save", refuse)
    recording = _recording(call)
    assert recording_download(recording_id=recording.pk).result == "retry"
    recording.refresh_from_db()
    assert recording.last_error == "Storage: ConnectionError" and recording.status == "pending"


def test_a_row_deleted_while_copying_keeps_no_file(call, monkeypatch, storage):
    """Retention (or staff) got there first: the copy must not leave a file behind its back."""
    from telephony.sandbox.provider import SandboxProvider

    real = SandboxProvider.download_file

    def meanwhile(self, url, into, **kwargs):
        size = real(self, url, into, **kwargs)
        Recording.objects.update(status=CopiedFile.Status.DELETED)
        return size

    monkeypatch.setattr(SandboxProvider, "download_file", meanwhile)
    recording = _recording(call)
    assert recording_download(recording_id=recording.pk).result == "skipped"
    assert _stored(storage) == []
    assert Recording.objects.get().file == ""


# --- Nothing stays pending for ever --------------------------------------------------------------


def test_a_recording_at_its_last_attempt_is_taken_up_and_failed(call):
    """Its worker died during the last attempt: the redrive must still bring it to an end."""
    now = timezone.now()
    recording = _recording(call, attempts=MAX, next_attempt_at=now - timedelta(minutes=5), last_error="HTTP 500")
    assert recording.pk in RECORDINGS.lost(now, 1000)
    assert tasks.download_recording.apply(args=[recording.pk]).get() == "failed"
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED and "Gave up after 10 attempts" in recording.last_error
    assert recording.pk not in RECORDINGS.lost(now, 1000)


def test_an_attempt_holds_its_row_for_a_lease(call, monkeypatch):
    """A running copy is not doubled by the redrive; a dead one is taken up once its lease passes."""
    from telephony.sandbox.provider import SandboxProvider

    leased: list = []

    def dies(self, url, into, **kwargs):
        leased.append(Recording.objects.get().next_attempt_at)
        raise SystemExit("worker killed")

    monkeypatch.setattr(SandboxProvider, "download_file", dies)
    recording = _recording(call)
    now = timezone.now()  # the task runs after the row was written
    with pytest.raises(SystemExit):
        recording_download(recording_id=recording.pk, now=now)
    assert leased == [now + LEASE]
    # Held until the lease ends (plus the redrive's grace); then due again.
    assert recording.pk not in RECORDINGS.lost(now + LEASE, 1000)
    assert recording.pk in RECORDINGS.lost(now + LEASE + REDRIVE_GRACE + timedelta(seconds=1), 1000)


def test_a_lost_retry_waits_for_its_backoff(call):
    recording = _recording(call)
    Recording.objects.filter(pk=recording.pk).update(created_at=timezone.now() - timedelta(hours=1))
    failure_inject(path="/v1/files", mode="5xx", count=1)
    now = timezone.now()
    assert recording_download(recording_id=recording.pk, now=now).result == "retry"
    recording.refresh_from_db()
    assert recording.pk not in RECORDINGS.lost(now, 1000)
    assert recording.pk in RECORDINGS.lost(recording.next_attempt_at + timedelta(minutes=2), 1000)


def test_never_after_vonage_has_deleted_the_file(call):
    recording = _recording(call)
    Recording.objects.filter(pk=recording.pk).update(created_at=timezone.now() - timedelta(days=31))
    assert recording_download(recording_id=recording.pk).result == "failed"


def test_staff_retry_starts_over_but_never_for_a_foreign_url(call):
    from proxy.recordings import NOT_VONAGE, copied_file_retry

    failed = _recording(call, status="failed", attempts=MAX, last_error="HTTP 500")
    foreign = _recording(call, recording_uuid="rec-2", status="failed", last_error=NOT_VONAGE)
    assert copied_file_retry(row=failed) is True
    assert copied_file_retry(row=foreign) is False
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)


# --- Transcripts -------------------------------------------------------------------------------------


def test_a_transcript_is_copied_like_a_recording(call):
    sandbox = transcript_create(call_uuid="leg-1", sentences=[(0, "Hello.")])
    transcript = Transcript.objects.create(
        recording_uuid="rec-1",
        transcription_url=f"https://api.nexmo.com/v1/files/{sandbox.id}",
        conversation_uuid="CON-1",
    )
    assert transcript_download(transcript_id=transcript.pk).result == "done"
    transcript.refresh_from_db()
    assert transcript.file.name.startswith("transcripts/") and transcript.file.name.endswith("rec-1.json")
    assert transcript.file.read() == bytes(sandbox.content)
    assert transcript.call == call
    assert TRANSCRIPTS.lost(timezone.now() + timedelta(days=1), 10) == []


def test_the_transcript_cap_is_its_own(call, settings):
    settings.TRANSCRIPT_MAX_BYTES = 5
    sandbox = transcript_create(call_uuid="leg-1", sentences=[(0, "Hello.")])
    transcript = Transcript.objects.create(
        recording_uuid="rec-1",
        transcription_url=f"https://api.nexmo.com/v1/files/{sandbox.id}",
        conversation_uuid="CON-1",
    )
    assert transcript_download(transcript_id=transcript.pk).result == "failed"


def test_provider_errors_name_their_kind(call, monkeypatch):
    from telephony.sandbox.provider import SandboxProvider

    def slow(self, url, into, **kwargs):
        raise ProviderError("Download file: not done within 120 s", permanent=False, code="timeout")

    monkeypatch.setattr(SandboxProvider, "download_file", slow)
    recording = _recording(call)
    assert recording_download(recording_id=recording.pk).result == "retry"
    assert "not done within" in Recording.objects.get().last_error
