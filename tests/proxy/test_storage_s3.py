"""Recordings and transcripts round-trip through a real S3 API: moto's server, on a free
loopback port, spoken to over HTTP by django-storages and boto3 exactly as a bucket would be.

No mock of boto3: the product's storage settings point at the server, objects are really
written, signed URLs are really signed and fetched, and retention really deletes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from django.core.files.storage import default_storage
from django.urls import reverse
from moto.server import ThreadedMotoServer

from proxy.models import Call, CopiedFile, Recording, Transcript
from proxy.retention import retention_apply
from telephony.sandbox.engine import recording_create, transcript_create
from tests.webhooks.conftest import load_fixture, post_json

ROOT = Path(__file__).resolve().parents[2]
ACCESS = {"aws_access_key_id": "testing-key", "aws_secret_access_key": "testing-secret"}
REGION = "us-east-1"
CONVERSATION_UUID = "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server in this process's thread, on a port the OS picks."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, settings) -> str:
    """A fresh bucket, and the product's default storage pointed at it as the README says."""
    name = f"recordings-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **ACCESS)
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_endpoint,
                "region_name": REGION,
                "access_key": ACCESS["aws_access_key_id"],
                "secret_key": ACCESS["aws_secret_access_key"],
                "signature_version": "s3v4",
                "location": "masked-calling",
                "default_acl": None,
                "querystring_auth": True,
                "querystring_expire": 300,
                "file_overwrite": False,
            },
        },
    }
    settings.STORAGE_SERVE = "redirect"
    return name


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **ACCESS)


@pytest.fixture
def call(conversation) -> Call:
    return Call.objects.create(
        uuid="leg-in", conversation_uuid=CONVERSATION_UUID, conversation=conversation, service=conversation.service
    )


def _object(s3, bucket: str, row: CopiedFile) -> bytes:
    return s3.get_object(Bucket=bucket, Key=f"masked-calling/{row.file.name}")["Body"].read()


def _absent(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        return error.response["Error"]["Code"] in ("404", "NoSuchKey")
    return False


def _copy_recording(client, django_capture_on_commit_callbacks) -> tuple[Recording, bytes]:
    sandbox = recording_create(call_uuid="leg-in")
    payload = {**load_fixture("event_record.json"), "recording_url": f"https://api.nexmo.com/v1/files/{sandbox.id}"}
    with django_capture_on_commit_callbacks(execute=True):
        assert post_json(client, "/webhooks/recording", payload).status_code == 204
    recording = Recording.objects.get()
    assert recording.status == Recording.Status.DOWNLOADED, recording.last_error
    return recording, bytes(sandbox.content)


def test_a_recording_is_copied_into_the_bucket_and_served_through_a_signed_url(
    client, api, call, bucket, s3, django_capture_on_commit_callbacks
):
    recording, content = _copy_recording(client, django_capture_on_commit_callbacks)
    assert _object(s3, bucket, recording) == content

    calls = api.get(f"/api/v1/conversations/{call.conversation_id}/calls").json()["results"]
    url = calls[0]["recording_url"]
    assert url == f"http://testserver/api/v1/recordings/{recording.recording_uuid}"
    response = api.get(url)
    assert response.status_code == 302 and "no-store" in response["Cache-Control"]
    signed = response["Location"]
    query = parse_qs(urlsplit(signed).query)
    assert query["X-Amz-Expires"] == ["300"] and "X-Amz-Signature" in query
    fetched = requests.get(signed, timeout=10)
    assert fetched.status_code == 200 and fetched.content == content
    # The bucket is private: the same object without a signature is refused.
    assert requests.get(signed.split("?")[0], timeout=10).status_code == 403


def test_the_recording_is_404_to_another_service_and_401_without_a_key(
    client, call, bucket, django_capture_on_commit_callbacks
):
    from rest_framework.test import APIClient

    from proxy.api_keys import api_key_create
    from tests.factories import ServiceFactory

    recording, _ = _copy_recording(client, django_capture_on_commit_callbacks)
    path = f"/api/v1/recordings/{recording.recording_uuid}"
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(service=ServiceFactory(slug='other'))[1]}")
    assert other.get(path).status_code == 404
    assert APIClient().get(path).status_code == 401


def test_a_transcript_round_trips_and_streams_when_asked(
    client, api, call, bucket, s3, settings, django_capture_on_commit_callbacks
):
    sandbox = transcript_create(call_uuid="leg-in", sentences=[(0, "Where are you?"), (1, "At the door.")])
    payload = {
        **load_fixture("transcription.json"),
        "transcription_url": f"https://api.nexmo.com/v1/files/{sandbox.id}",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert post_json(client, "/webhooks/transcription", payload).status_code == 204
    transcript = Transcript.objects.get()
    assert transcript.status == CopiedFile.Status.DOWNLOADED, transcript.last_error
    assert json.loads(_object(s3, bucket, transcript)) == json.loads(bytes(sandbox.content))

    url = api.get(f"/api/v1/conversations/{call.conversation_id}/calls").json()["results"][0]["transcript_url"]
    assert requests.get(api.get(url)["Location"], timeout=10).json() == json.loads(bytes(sandbox.content))

    settings.STORAGE_SERVE = "stream"  # through the web process instead of a redirect
    response = api.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(b"".join(response.streaming_content)) == json.loads(bytes(sandbox.content))


def test_an_administrator_plays_a_recording_from_the_bucket(
    client, call, bucket, admin_client, django_capture_on_commit_callbacks
):
    recording, content = _copy_recording(client, django_capture_on_commit_callbacks)
    response = admin_client.get(reverse("admin:proxy_recording_audio", args=[recording.pk]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == content


def test_retention_deletes_the_objects(client, call, bucket, s3, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from proxy.models import Conversation
    from proxy.services import conversation_close

    recording, _ = _copy_recording(client, django_capture_on_commit_callbacks)
    key = f"masked-calling/{recording.file.name}"
    conversation_close(conversation=call.conversation)
    Conversation.objects.filter(pk=call.conversation_id).update(ended_at=timezone.now() - timedelta(days=91))

    assert retention_apply()["recording_files"] == 1
    assert _absent(s3, bucket, key)
    recording.refresh_from_db()
    assert (recording.status, recording.file.name) == ("deleted", "")
    assert default_storage.listdir("")[1] == []


def _settings_with(env: dict[str, str]) -> subprocess.CompletedProcess:
    script = (
        "import json, django; from django.conf import settings; django.setup(); "
        "print(json.dumps([settings.STORAGES['default'], settings.STORAGE_SERVE]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STORAGE_"))}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        # Production settings fail closed without an explicit provider and signature secret.
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VONAGE_PROVIDER": "sandbox",
            "VONAGE_SIGNATURE_SECRET": "test-only-signature-secret",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_storage_settings_come_from_the_environment():
    local = _settings_with({})
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout.splitlines()[-1]) == [
        {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "stream",
    ]
    s3 = _settings_with(
        {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": "calls",
            "S3_ENDPOINT_URL": "https://minio.internal:9000",
            "S3_REGION": "eu-west-1",
            "S3_ACCESS_KEY_ID": "key",
            "S3_SECRET_ACCESS_KEY": "secret",
            "S3_SIGNED_URL_SECONDS": "60",
        }
    )
    assert s3.returncode == 0, s3.stderr
    default, serve = json.loads(s3.stdout.splitlines()[-1])
    assert default["BACKEND"] == "storages.backends.s3.S3Storage" and serve == "redirect"
    options = default["OPTIONS"]
    assert (options["bucket_name"], options["endpoint_url"], options["region_name"]) == (
        "calls",
        "https://minio.internal:9000",
        "eu-west-1",
    )
    assert (options["querystring_auth"], options["querystring_expire"], options["default_acl"]) == (True, 60, None)
    missing = _settings_with({"STORAGE_BACKEND": "s3"})
    assert missing.returncode != 0 and "S3_BUCKET is required" in missing.stderr
    wrong = _settings_with({"STORAGE_BACKEND": "ftp"})
    assert wrong.returncode != 0 and "STORAGE_BACKEND must be" in wrong.stderr
