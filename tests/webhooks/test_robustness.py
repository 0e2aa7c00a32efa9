"""Hostile bodies on every webhook: a 4xx or a 2xx, never a 500."""

from __future__ import annotations

import pytest

from proxy.models import CallEvent

DEEP_LIST = b"[" * 20000 + b"]" * 20000
DEEP_OBJECT = b'{"x":' * 5000 + b"1" + b"}" * 5000


@pytest.mark.parametrize("url", ["/webhooks/sms/status", "/webhooks/sms/inbound"])
@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT, b"{broken", b"\xff"])
def test_sms_webhooks_refuse_absurd_json_with_400(client, db, url, body):
    assert client.post(url, body, content_type="application/json").status_code == 400


@pytest.mark.parametrize("url", ["/webhooks/answer", "/webhooks/event", "/webhooks/fallback", "/webhooks/recording"])
@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT])
def test_voice_webhooks_keep_answering(client, db, url, body):
    assert client.post(url, body, content_type="application/json").status_code in (200, 204)


def test_sms_inbound_with_a_nul_character_is_kept(client, db):
    response = client.get("/webhooks/sms/inbound", {"msisdn": "12015550101", "to": "12015550200", "text": "a\x00b"})
    assert response.status_code in (200, 204)
    assert "\x00" not in str(CallEvent.objects.get(source="sms-inbound").payload)
