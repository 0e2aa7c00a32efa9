"""Recording, transcription and record-notice webhooks: kept once, never a 5xx, never a foreign file."""

from __future__ import annotations

import pytest

from proxy.models import Call, CallbackDelivery, CallEvent, CopiedFile, Recording, Transcript
from proxy.ncco import GENERIC_NOTICE_TEXT
from telephony.ncco import ncco_validate
from telephony.sandbox.engine import recording_create, transcript_create
from tests.webhooks.conftest import load_fixture, post_json

CONVERSATION_UUID = "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


@pytest.fixture
def call(conversation) -> Call:
    return Call.objects.create(
        uuid="leg-in", conversation_uuid=CONVERSATION_UUID, conversation=conversation, service=conversation.service
    )


@pytest.fixture
def storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def _record_event(**fields) -> dict:
    return {**load_fixture("event_record.json"), **fields}


def test_a_record_event_is_kept_linked_and_copied(client, call, storage, django_capture_on_commit_callbacks):
    sandbox = recording_create(call_uuid="leg-in")
    payload = _record_event(recording_url=f"https://api.nexmo.com/v1/files/{sandbox.id}")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_json(client, "/webhooks/recording", payload).status_code == 204
    recording = Recording.objects.get()
    assert (recording.call, recording.conversation) == (call, call.conversation)
    assert recording.status == Recording.Status.DOWNLOADED
    assert recording.file.read() == bytes(sandbox.content)


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/v1/files/abc",
        "http://api.nexmo.com/v1/files/abc",
        "https://api.nexmo.com@attacker.example/v1/files/abc",
        "file:///etc/passwd",
    ],
)
def test_a_url_that_is_not_vonages_is_kept_failed_and_never_fetched(client, call, url, monkeypatch):
    from telephony.sandbox import provider

    def never(*args, **kwargs):
        raise AssertionError("nothing may be fetched")

    monkeypatch.setattr(provider.SandboxProvider, "_send", never)
    response = post_json(client, "/webhooks/recording", _record_event(recording_url=url))
    assert response.status_code == 204
    recording = Recording.objects.get()
    assert recording.status == Recording.Status.FAILED
    assert recording.last_error.startswith("Not a Vonage file URL")


def test_a_recording_for_an_unknown_call_is_kept_pending_unlinked(client, db):
    response = post_json(client, "/webhooks/recording", _record_event(conversation_uuid="CON-nobody"))
    assert response.status_code == 204
    recording = Recording.objects.get()
    assert recording.status == Recording.Status.PENDING and recording.call is None


def test_a_recording_webhook_that_cannot_be_kept_still_gets_204(client, db, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr("webhooks.views.event_receive", broken)
    response = post_json(client, "/webhooks/recording", _record_event())
    assert response.status_code == 204
    assert "cccccccc-1111-2222-3333-444444444444" in caplog.text


def test_garbage_at_the_recording_webhook_is_acknowledged(client, db):
    for body in ("[]", "not json", '{"recording_uuid": ["x"]}', '{"recording_url": 7}'):
        assert client.post("/webhooks/recording", body, content_type="application/json").status_code == 204
    assert not Recording.objects.exists()


def test_a_transcription_is_kept_copied_and_reported(client, call, storage, django_capture_on_commit_callbacks):
    service = call.conversation.service
    service.callback_url = "https://marketplace.example/hooks"
    service.callback_secret = "x" * 32
    service.save()
    sandbox = transcript_create(call_uuid="leg-in", sentences=[(0, "Hello."), (1, "Hi there.")])
    payload = {
        **load_fixture("transcription.json"),
        "transcription_url": f"https://api.nexmo.com/v1/files/{sandbox.id}",
    }
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            assert post_json(client, "/webhooks/transcription", payload).status_code == 204
    transcript = Transcript.objects.get()
    assert transcript.status == CopiedFile.Status.DOWNLOADED and transcript.call == call
    assert transcript.file.read() == bytes(sandbox.content)
    assert CallEvent.objects.get(source="transcription").kind == "transcription"
    delivery = CallbackDelivery.objects.get(event="recording.transcribed")
    data = delivery.payload["data"]
    assert data["recording"]["uuid"] == payload["recording_uuid"]
    assert data["recording"]["transcript_url"].endswith(f"/api/v1/recordings/{payload['recording_uuid']}/transcript")
    assert data["recording"]["recording_url"] is None  # the recording itself is not copied yet
    assert data["conversation"]["id"] == str(call.conversation_id)
    assert data["call"] == {"uuid": "leg-in", "conversation_uuid": CONVERSATION_UUID}


def test_a_transcription_without_a_transcript_is_kept_failed(client, call):
    payload = {**load_fixture("transcription.json"), "status": "failed"}
    del payload["transcription_url"]
    assert post_json(client, "/webhooks/transcription", payload).status_code == 204
    transcript = Transcript.objects.get()
    assert transcript.status == CopiedFile.Status.FAILED
    assert transcript.last_error == "Vonage sent no transcript (status failed)"


def test_a_transcription_at_a_foreign_url_is_kept_failed(client, call):
    payload = {**load_fixture("transcription.json"), "transcription_url": "https://evil.example/t.json"}
    assert post_json(client, "/webhooks/transcription", payload).status_code == 204
    assert Transcript.objects.get().status == CopiedFile.Status.FAILED


# --- The callee's notice (onAnswer) ---------------------------------------------------------------


def test_the_callee_hears_the_services_notice(client, service):
    service.record_notice = "Heads up: this call is recorded."
    service.record_notice_language = "en-GB"
    service.save()
    for method in (client.get, client.post):
        response = method(f"/webhooks/record-notice?service={service.pk}")
        assert response.status_code == 200
        ncco = response.json()
        ncco_validate(ncco)
        assert ncco == [
            {"action": "talk", "text": "Heads up: this call is recorded.", "bargeIn": False, "language": "en-GB"}
        ]


@pytest.mark.parametrize(
    "query", ["", "?service=", "?service=999999", "?service=abc", "?service=%C2%B2", "?service=9" * 30]
)
def test_a_notice_request_that_names_no_service_still_gets_a_notice(client, db, query):
    response = client.get(f"/webhooks/record-notice{query}")
    assert response.status_code == 200
    assert response.json()[0]["text"] == GENERIC_NOTICE_TEXT


def test_a_notice_when_the_database_fails_is_the_generic_one(client, service, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr("proxy.models.Service.objects.filter", broken)
    response = client.get(f"/webhooks/record-notice?service={service.pk}")
    assert response.status_code == 200
    assert response.json() == [{"action": "talk", "text": GENERIC_NOTICE_TEXT, "bargeIn": False, "language": "en-US"}]


def test_a_later_transcription_webhook_without_a_url_does_not_undo_a_transcript(client, call):
    good = load_fixture("transcription.json")
    assert post_json(client, "/webhooks/transcription", good).status_code == 204
    failed = {key: value for key, value in good.items() if key != "transcription_url"}
    assert post_json(client, "/webhooks/transcription", {**failed, "status": "failed"}).status_code == 204
    transcript = Transcript.objects.get()
    assert transcript.status == CopiedFile.Status.PENDING and transcript.last_error == ""
