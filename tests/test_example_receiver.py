"""The README's example marketplace receiver works against the product as documented."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from proxy.models import Call, Conversation
from telephony.ncco import ncco_validate
from tests.conftest import ALICE, BOB, CAROL

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "marketplace_receiver.py"
SUPPORT = "12015550104"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("marketplace_receiver", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def receiver(settings) -> Iterator[tuple[ModuleType, str]]:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    module = _example()

    class Handler(module.Receiver):  # type: ignore[name-defined,misc]
        secrets: list[str] = []
        support_number = SUPPORT
        received: list = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Handler, f"http://127.0.0.1:{server.server_port}/marketplace"
    finally:
        server.shutdown()
        server.server_close()


def _answer(client, caller: str, dialled: str, uuid: str) -> list[dict]:
    response = client.get("/webhooks/answer", {"from": caller, "to": dialled, "uuid": uuid})
    assert response.status_code == 200
    ncco = response.json()
    ncco_validate(ncco)
    return ncco


def test_the_example_receiver_verifies_and_answers_both_hooks(api, client, conversation, receiver):
    handler, url = receiver
    secret = api.post("/api/v1/service/callback-secret").json()["secret"]
    handler.secrets = [secret]
    body = {"callback_url": url, "intercept_url": url, "out_of_session_url": url}
    assert api.patch("/api/v1/service", body, format="json").status_code == 200

    # A known caller: intercepted and allowed.
    ncco = _answer(client, ALICE, "12015550200", "ex-1")
    assert ncco[-1]["action"] == "connect" and ncco[-1]["endpoint"][0]["number"] == BOB
    assert Call.objects.get(uuid="ex-1").hook_outcome == "allowed"

    # The order flagged: blocked.
    Conversation.objects.filter(pk=conversation.pk).update(metadata={"calls_blocked": True})
    ncco = _answer(client, ALICE, "12015550200", "ex-2")
    assert [a["action"] for a in ncco] == ["talk"]
    assert Call.objects.get(uuid="ex-2").hook_outcome == "blocked"

    # A stranger: put through to support in a conversation of their own.
    ncco = _answer(client, CAROL, "12015550200", "ex-3")
    assert ncco[-1]["endpoint"][0]["number"] == SUPPORT
    assert Conversation.objects.get(external_id="support").participants.count() == 2

    # After a rotation the receiver still holding only the old secret keeps verifying.
    api.post("/api/v1/service/callback-secret")
    ncco = _answer(client, ALICE, "12015550200", "ex-4")
    assert Call.objects.get(uuid="ex-4").hook_outcome == "blocked"  # the receiver answered, not the fallback


def test_a_receiver_with_the_wrong_secret_refuses_and_the_fallback_applies(api, client, conversation, receiver):
    handler, url = receiver
    api.post("/api/v1/service/callback-secret")
    handler.secrets = ["whsec_not_this_one"]
    assert api.patch("/api/v1/service", {"intercept_url": url}, format="json").status_code == 200
    ncco = _answer(client, ALICE, "12015550200", "ex-5")
    call = Call.objects.get(uuid="ex-5")
    assert (call.hook_outcome, call.hook_status_code) == ("allowed_on_error", 401)
    assert ncco[-1]["action"] == "connect"


def test_verified_accepts_either_signature_and_refuses_stale_ones():
    module = _example()
    body = b'{"type":"x"}'
    import hashlib
    import hmac

    def sign(secret: str, timestamp: str) -> str:
        return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    headers = {"X-Signature-Timestamp": "1000", "X-Signature": f"{sign('new', '1000')},{sign('old', '1000')}"}
    assert module.verified(["old"], headers, body, now=1000)
    assert module.verified(["new"], headers, body, now=1100)
    assert not module.verified(["other"], headers, body, now=1000)
    assert not module.verified(["new"], headers, body, now=1000 + 301)
    assert not module.verified(["new"], headers, body + b" ", now=1000)
