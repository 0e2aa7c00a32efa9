from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from telephony.sandbox.provider import SandboxProvider
from telephony.sandbox.server import serve_sandbox
from telephony.vonage_provider import VonageProvider


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def sandbox_server(db, monkeypatch):
    """The sandbox over TLS on a free loopback port, sharing the test's database connection."""
    with serve_sandbox(share_connection=True) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_path)
        yield server


# The SDK's read timeout. A test whose ``mode`` makes the sandbox hold the request
# ("timeout") needs a short one, to fail fast; every other test a generous one: with 1 s,
# an ordinary Number Insight request timed out on a loaded CI machine.
HELD_REQUEST_TIMEOUT = 1
TIMEOUT = 15


@pytest.fixture
def vonage(request, sandbox_server, private_key_pem) -> VonageProvider:
    """The real SDK, aimed at the sandbox."""
    callspec = getattr(request.node, "callspec", None)
    held = callspec is not None and callspec.params.get("mode") == "timeout"
    return VonageProvider(
        api_key="sandbox-key",
        api_secret="sandbox-secret",
        application_id="app-123",
        private_key=private_key_pem,
        api_host=sandbox_server.host,
        rest_host=sandbox_server.host,
        timeout=HELD_REQUEST_TIMEOUT if held else TIMEOUT,
    )


@pytest.fixture(params=["vonage", "sandbox"])
def provider(request, db):
    """Each provider test runs twice: the SDK over HTTPS, and the in-process sandbox provider."""
    if request.param == "vonage":
        return request.getfixturevalue("vonage")
    return SandboxProvider()
