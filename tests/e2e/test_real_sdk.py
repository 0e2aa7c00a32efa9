"""End to end as in production: the product's provider is the official Vonage SDK, talking
HTTPS to the sandbox server (a test CA), and Vonage's side of the call arrives over HTTP."""

from __future__ import annotations

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.db import connection

from harness.callplayer import HttpTransport, call_play
from proxy.api_keys import api_key_create
from proxy.models import Notification
from telephony.models import SandboxMessage
from telephony.registry import get_provider
from telephony.sandbox.server import serve_sandbox
from tests.conftest import ALICE, BOB
from tests.factories import ServiceFactory, VirtualNumberFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "e2e-real-sdk-signature-secret-32-bytes!"


@pytest.fixture
def production_like(live_server, settings, monkeypatch):
    # In-memory SQLite exists once per connection: the sandbox must share the test's.
    with serve_sandbox(share_connection=connection.vendor == "sqlite") as sandbox:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_path)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        settings.VONAGE_PROVIDER = ""  # chosen from the credentials, as in production
        settings.VONAGE_APPLICATION_ID = "e2e-application"
        settings.VONAGE_PRIVATE_KEY = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        settings.VONAGE_API_KEY = "e2e-key"
        settings.VONAGE_API_SECRET = "e2e-secret"
        settings.VONAGE_API_HOST = settings.VONAGE_REST_HOST = sandbox.host
        settings.VONAGE_SIGNATURE_SECRET = SECRET
        settings.PUBLIC_URL = live_server.url
        cache.clear()
        yield live_server.url, sandbox


def test_conversation_sms_and_call_through_the_real_sdk(production_like):
    server, sandbox = production_like
    assert get_provider().name == "vonage"
    service = ServiceFactory(slug="live-like", default_country="US")
    for n in (200, 201):
        VirtualNumberFactory(service=service, number=f"1201555{n:04d}")
    key = api_key_create(service=service)[1]

    response = requests.post(
        f"{server}/api/v1/conversations",
        json={"participants": [{"number": "+" + ALICE}, {"number": "+" + BOB}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    people = {p["number"]: p for p in response.json()["participants"]}

    # Each SMS went through the SDK over HTTPS and was recorded by the sandbox.
    assert {m.to_number for m in SandboxMessage.objects.all()} == {ALICE, BOB}
    assert any(r.path == "/sms/json" for r in sandbox.requests)
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    sent = {m.to_number: m for m in SandboxMessage.objects.all()}
    assert sent[ALICE].from_number == people[ALICE]["proxy_number"]
    assert ALICE not in sent[BOB].text and BOB not in sent[ALICE].text

    result = call_play(
        transport=HttpTransport(server), caller=ALICE, proxy_number=people[ALICE]["proxy_number"], secret=SECRET
    )
    assert result.ok, "\n".join(result.transcript)
    assert result.connected.to_number == BOB
    assert result.connected.from_number == people[BOB]["proxy_number"]
