"""Provisioning the Vonage application's voice webhooks (issue 18): answer and event as POST,
so the signed token's payload_hash covers the numbers a call is routed on."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from vonage_application import ApplicationConfig
from vonage_application.common import Capabilities, Voice, VoiceUrl, VoiceWebhooks

from telephony.provider import VoiceWebhookUrls
from telephony.vonage_provider import VonageProvider
from tests.virtual_numbers.fake_provider import FakeProvider
from virtual_numbers.services import application_webhooks_configure


class Recorder(FakeProvider):
    def voice_webhooks_set(self, urls: VoiceWebhookUrls) -> None:
        self.calls.append(("webhooks", {"urls": urls}))


def test_the_service_points_every_voice_webhook_at_us_with_post(settings):
    settings.PUBLIC_URL = "https://proxy.example.com"
    provider = Recorder()
    urls = application_webhooks_configure(provider=provider)
    assert provider.calls == [("webhooks", {"urls": urls})]
    assert urls.answer_url == "https://proxy.example.com/webhooks/answer"
    assert urls.event_url == "https://proxy.example.com/webhooks/event"
    assert urls.fallback_url == "https://proxy.example.com/webhooks/fallback"
    assert (urls.answer_method, urls.event_method, urls.fallback_method) == ("POST", "POST", "POST")


def test_the_command_prints_what_it_set(settings, monkeypatch):
    settings.PUBLIC_URL = "https://proxy.example.com"
    provider = Recorder()
    monkeypatch.setattr("telephony.registry._provider", provider)
    out = io.StringIO()
    call_command("configure_vonage_application", stdout=out)
    text = out.getvalue()
    assert "POST https://proxy.example.com/webhooks/answer" in text
    assert "POST https://proxy.example.com/webhooks/event" in text


def test_the_vonage_provider_keeps_the_application_and_sets_post(private_key_pem):
    provider = VonageProvider(api_key="k", api_secret="s", application_id="app-1", private_key=private_key_pem)
    current = SimpleNamespace(
        name="Masked calling",
        capabilities=Capabilities(
            voice=Voice(
                webhooks=VoiceWebhooks(answer_url=VoiceUrl(address="https://old/answer", http_method="GET")),
                signed_callbacks=True,
            )
        ),
        privacy=None,
        keys=None,
    )
    sent: list[tuple[str, ApplicationConfig]] = []
    application = provider._client.application

    def get_application(app_id: str):
        return current

    def update_application(app_id: str, config: ApplicationConfig):
        sent.append((app_id, config))
        return config

    get_application.__self__ = application  # type: ignore[attr-defined]
    update_application.__self__ = application  # type: ignore[attr-defined]
    application.get_application = get_application  # type: ignore[method-assign]
    application.update_application = update_application  # type: ignore[method-assign]

    urls = VoiceWebhookUrls(answer_url="https://p/a", event_url="https://p/e", fallback_url="https://p/f")
    provider.voice_webhooks_set(urls)

    ((app_id, config),) = sent
    assert app_id == "app-1" and config.name == "Masked calling"
    hooks = config.capabilities.voice.webhooks
    assert (hooks.answer_url.address, hooks.answer_url.http_method) == ("https://p/a", "POST")
    assert (hooks.event_url.address, hooks.event_url.http_method) == ("https://p/e", "POST")
    assert (hooks.fallback_answer_url.address, hooks.fallback_answer_url.http_method) == ("https://p/f", "POST")
    assert config.capabilities.voice.signed_callbacks is True


@pytest.fixture
def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
