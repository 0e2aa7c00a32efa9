"""Only Administrators play recordings and read transcripts, and each play or read is logged."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.urls import reverse

from proxy.admin_recordings import transcript_lines
from proxy.models import Call, Recording, Transcript
from tests.console import staff_user

pytestmark = pytest.mark.django_db

TRANSCRIPT = {
    "channels": [
        {"transcript": [{"sentence": "Hello, is that the driver?", "timestamp": 0, "duration": 900}]},
        {"transcript": [{"sentence": "Yes, I am outside.", "timestamp": 1000, "duration": 800}]},
    ]
}


@pytest.fixture
def copied(conversation, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call = Call.objects.create(uuid="leg-1", conversation=conversation, service=conversation.service)
    recording = Recording.objects.create(
        recording_uuid="r1",
        call=call,
        conversation=conversation,
        recording_url="https://api.nexmo.com/x",
        status="downloaded",
    )
    recording.file.save("r1.mp3", ContentFile(b"ID3fake-audio"))
    transcript = Transcript.objects.create(
        recording_uuid="r1",
        call=call,
        conversation=conversation,
        transcription_url="https://api.nexmo.com/t",
        status="downloaded",
    )
    transcript.file.save("r1.json", ContentFile(json.dumps(TRANSCRIPT).encode()))
    return call, recording, transcript


def _logged(obj) -> list[str]:
    entries = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk))
    return [entry.get_change_message() for entry in entries.order_by("pk")]


def test_an_administrator_plays_and_reads_and_each_is_logged(client, copied):
    call, recording, transcript = copied
    client.force_login(staff_user("Administrators"))

    detail = client.get(reverse("admin:proxy_call_change", args=[call.pk])).content.decode()
    audio_url = reverse("admin:proxy_recording_audio", args=[recording.pk])
    assert f'src="{audio_url}"' in detail
    assert reverse("admin:proxy_transcript_read", args=[transcript.pk]) in detail
    assert _logged(recording) == []  # looking at the page plays nothing

    response = client.get(audio_url)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == b"ID3fake-audio"
    # A seek within the same play is not a second play.
    client.get(audio_url, HTTP_RANGE="bytes=4000-")
    client.get(audio_url, HTTP_RANGE="bytes=0-")
    assert _logged(recording) == ["Played the recording", "Played the recording"]

    page = client.get(reverse("admin:proxy_transcript_read", args=[transcript.pk])).content.decode()
    assert "Caller:</strong> Hello, is that the driver?" in page
    assert page.index("Hello, is that") < page.index("Yes, I am outside.")
    assert _logged(transcript) == ["Read the transcript"]
    raw = client.get(reverse("admin:proxy_transcript_file", args=[transcript.pk]))
    assert json.loads(b"".join(raw.streaming_content)) == TRANSCRIPT
    assert _logged(transcript) == ["Read the transcript", "Downloaded the transcript"]


def test_an_operator_sees_that_a_recording_exists_but_neither_plays_nor_reads(client, copied):
    call, recording, transcript = copied
    client.force_login(staff_user("Operators"))

    detail = client.get(reverse("admin:proxy_call_change", args=[call.pk])).content.decode()
    assert "<audio" not in detail and "Only Administrators play recordings." in detail
    assert client.get(reverse("admin:proxy_recording_change", args=[recording.pk])).status_code == 200
    assert client.get(reverse("admin:proxy_recording_changelist")).status_code == 200
    assert client.get(reverse("admin:proxy_transcript_changelist")).status_code == 200

    assert client.get(reverse("admin:proxy_recording_audio", args=[recording.pk])).status_code == 403
    assert client.get(reverse("admin:proxy_transcript_read", args=[transcript.pk])).status_code == 403
    assert client.get(reverse("admin:proxy_transcript_file", args=[transcript.pk])).status_code == 403
    assert not LogEntry.objects.exists()


def test_failed_copies_are_visible_to_staff_with_their_error(client, conversation):
    Recording.objects.create(
        recording_uuid="r-failed",
        recording_url="https://evil.example/x",
        status="failed",
        last_error="Not a Vonage file URL: never fetched",
    )
    client.force_login(staff_user("Operators"))
    listing = client.get(reverse("admin:proxy_recording_changelist"), {"status__exact": "failed"}).content.decode()
    assert "Not a Vonage file URL" in listing


def test_administrators_retry_failed_copies_and_it_is_logged(client, conversation, django_capture_on_commit_callbacks):
    recording = Recording.objects.create(
        recording_uuid="r2", recording_url="https://api.nexmo.com/v1/files/x", status="failed", last_error="HTTP 500"
    )
    client.force_login(staff_user("Administrators"))
    with django_capture_on_commit_callbacks():
        client.post(
            reverse("admin:proxy_recording_changelist"),
            {"action": "retry", "_selected_action": [recording.pk]},
        )
    recording.refresh_from_db()
    assert recording.status == "pending" and recording.attempts == 0
    assert _logged(recording) == ["Retried by staff"]


def test_a_transcript_that_is_not_vonages_shape_reads_as_one_block():
    assert transcript_lines(b"plain words") == [("", "plain words")]
    assert transcript_lines(b'{"channels": 3}') == [("", '{"channels": 3}')]
    assert transcript_lines(json.dumps(TRANSCRIPT).encode()) == [
        ("Caller", "Hello, is that the driver?"),
        ("Callee", "Yes, I am outside."),
    ]
