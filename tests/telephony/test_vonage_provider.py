"""What only the SDK provider does: credentials, auth per API, timeouts, refusing foreign hosts."""

from __future__ import annotations

import io

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from telephony.provider import ProviderError
from telephony.sandbox.engine import call_record
from telephony.vonage_provider import VonageProvider, load_private_key
from tests.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db


def _pkcs1(pkcs8: str) -> str:
    key = serialization.load_pem_private_key(pkcs8.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def test_private_key_pkcs1_is_converted_to_pkcs8(private_key_pem):
    converted = load_private_key(_pkcs1(private_key_pem))
    assert converted.startswith("-----BEGIN PRIVATE KEY-----")


def test_private_key_from_a_path_without_extension(tmp_path, private_key_pem):
    path = tmp_path / "vonage_private_key"
    path.write_text(private_key_pem)
    assert load_private_key(str(path)) == private_key_pem


def test_private_key_with_escaped_newlines_as_env_files_write_them(private_key_pem):
    assert load_private_key(private_key_pem.strip().replace("\n", "\\n")) == private_key_pem


def test_voice_requests_carry_an_rs256_application_jwt(vonage, sandbox_server, private_key_pem):
    call_record(
        uuid="leg-1",
        conversation_uuid="CON-1",
        direction="outbound",
        from_number=BOB,
        to_number=ALICE,
        status="answered",
    )
    vonage.get_call("leg-1")
    request = sandbox_server.requests[-1]
    token = request.authorization.removeprefix("Bearer ")
    public_key = serialization.load_pem_private_key(private_key_pem.encode(), password=None).public_key()
    claims = jwt.decode(token, public_key, algorithms=["RS256"])
    assert claims["application_id"] == "app-123"


def test_sms_uses_key_and_secret_and_is_never_signed(vonage, sandbox_server):
    vonage.send_sms(from_number="12015550300", to_number=ALICE, text="hi")
    request = sandbox_server.requests[-1]
    assert request.authorization.startswith("Basic ")
    assert "sig" not in request.params
    assert request.params["type"] == "text"


def test_without_application_credentials_voice_fails_permanently(sandbox_server):
    provider = VonageProvider(
        api_key="k", api_secret="s", api_host=sandbox_server.host, rest_host=sandbox_server.host, timeout=1
    )
    with pytest.raises(ProviderError) as caught:
        provider.get_call("leg-1")
    assert caught.value.permanent is True
    assert sandbox_server.requests == []


def test_without_key_and_secret_numbers_fail_permanently(sandbox_server, private_key_pem):
    provider = VonageProvider(
        application_id="app", private_key=private_key_pem, api_host=sandbox_server.host, rest_host=sandbox_server.host
    )
    with pytest.raises(ProviderError) as caught:
        provider.search_numbers(country="US")
    assert caught.value.permanent is True
    assert sandbox_server.requests == []


def _download(provider: VonageProvider, url: str, *, max_bytes: int = 1024 * 1024, max_seconds: float = 10) -> bytes:
    into = io.BytesIO()
    provider.download_file(url, into, max_bytes=max_bytes, max_seconds=max_seconds)
    return into.getvalue()


def test_recordings_are_only_fetched_from_vonage_or_the_configured_host(vonage, sandbox_server):
    with pytest.raises(ProviderError) as caught:
        _download(vonage, "https://attacker.example/v1/files/abc")
    assert caught.value.permanent is True
    assert sandbox_server.requests == []


def test_unreachable_vonage_is_retryable(private_key_pem, unused_port):
    provider = VonageProvider(
        api_key="k",
        api_secret="s",
        application_id="app",
        private_key=private_key_pem,
        api_host=f"127.0.0.1:{unused_port}",
        rest_host=f"127.0.0.1:{unused_port}",
        timeout=1,
    )
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(from_number="12015550300", to_number=ALICE, text="hi")
    assert caught.value.permanent is False


def test_timeout_always_applies(private_key_pem):
    provider = VonageProvider(api_key="k", api_secret="s", timeout=2.5)
    assert provider._client.http_client.http_client_options.timeout == 3
    assert provider._client.http_client.http_client_options.max_retries == 0


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Recording downloads ----------------------------------------------------------------------------


@pytest.fixture
def no_foreign_requests(monkeypatch):
    """A refused URL must be refused before any request: fail loudly if one is attempted."""
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError(f"a request was attempted: {args[:1]}")

    monkeypatch.setattr(requests, "get", refuse)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.nexmo.com@attacker.example/v1/files/abc",  # user info: the host is attacker.example
        "https://attacker.example:443.nexmo.com/v1/files/abc",  # the netloc ends like Vonage's
        "https://attacker.example/.nexmo.com/v1/files/abc",
        "https://nexmo.com.attacker.example/v1/files/abc",
        "http://api.nexmo.com/v1/files/abc",
        "https:///v1/files/abc",
    ],
)
def test_recordings_are_refused_unless_the_hostname_is_vonages(vonage, no_foreign_requests, url):
    with pytest.raises(ProviderError) as caught:
        _download(vonage, url)
    assert (caught.value.permanent, caught.value.code) == (True, "untrusted-host")


def test_recordings_are_refused_from_another_port_of_the_configured_host(vonage, sandbox_server, unused_port):
    with pytest.raises(ProviderError) as caught:
        _download(vonage, f"https://127.0.0.1:{unused_port}/v1/files/abc")
    assert caught.value.permanent is True
    assert sandbox_server.requests == []


def test_a_recording_larger_than_the_cap_is_refused_by_its_length(vonage, sandbox_server):
    from telephony.sandbox.engine import recording_create

    recording = recording_create(call_uuid="leg-1")
    with pytest.raises(ProviderError) as caught:
        _download(vonage, f"{sandbox_server.base_url}/v1/files/{recording.id}", max_bytes=len(recording.content) - 1)
    assert (caught.value.permanent, caught.value.code) == (True, "too-large")


def test_a_recording_of_exactly_the_cap_is_fetched(vonage, sandbox_server):
    from telephony.sandbox.engine import recording_create

    recording = recording_create(call_uuid="leg-1")
    url = f"{sandbox_server.base_url}/v1/files/{recording.id}"
    assert _download(vonage, url, max_bytes=len(recording.content)) == bytes(recording.content)


CHUNK = b"\xff\xfb\x90\x00" * 256  # 1 KiB


class _FileServer:
    """A TLS file server (the sandbox's test CA) whose answer each test sets: ``handle(handler)``."""

    def __init__(self, ca, handle) -> None:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self
        self.paths: list[str] = []
        self.authorizations: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.paths.append(self.path)
                server.authorizations.append(self.headers.get("Authorization", ""))
                handle(self)

            def log_message(self, format, *args):
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A client that gives up mid-file (the point of some tests) is no error worth a traceback.
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def file_server(sandbox_server):
    servers: list[_FileServer] = []

    def start(handle) -> _FileServer:
        servers.append(_FileServer(sandbox_server.ca, handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _chunked(handler, chunks: int = 8, pause=None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "audio/mpeg")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    for _ in range(chunks):
        if pause is not None:
            pause()
        handler.wfile.write(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
        handler.wfile.flush()
    handler.wfile.write(b"0\r\n\r\n")


def _files_provider(host: str, private_key_pem: str) -> VonageProvider:
    return VonageProvider(application_id="app-123", private_key=private_key_pem, api_host=host, timeout=2)


def test_a_streamed_recording_past_the_cap_is_refused_without_a_length(file_server, private_key_pem):
    server = file_server(_chunked)
    provider = _files_provider(server.host, private_key_pem)
    with pytest.raises(ProviderError) as caught:
        _download(provider, f"https://{server.host}/v1/files/abc", max_bytes=3 * len(CHUNK))
    assert (caught.value.permanent, caught.value.code) == (True, "too-large")


def test_a_streamed_recording_under_the_cap_is_read_whole(file_server, private_key_pem):
    server = file_server(_chunked)
    provider = _files_provider(server.host, private_key_pem)
    assert _download(provider, f"https://{server.host}/v1/files/abc", max_bytes=8 * len(CHUNK)) == CHUNK * 8


def test_a_file_is_streamed_into_the_file_a_read_at_a_time(file_server, private_key_pem):
    """The whole file never sits in memory: each write is one read of the socket, at most a chunk."""
    server = file_server(lambda handler: _chunked(handler, chunks=64))
    provider = _files_provider(server.host, private_key_pem)

    class Recorder(io.RawIOBase):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            self.sizes.append(len(data))
            return len(data)

    into = Recorder()
    assert provider.download_file(f"https://{server.host}/v1/files/abc", into, max_bytes=10**6, max_seconds=10) == (
        64 * len(CHUNK)
    )
    assert len(into.sizes) > 1 and max(into.sizes) <= 64 * 1024


def test_a_trickling_download_stops_at_its_time_limit(file_server, private_key_pem):
    import threading

    release = threading.Event()
    server = file_server(lambda handler: _chunked(handler, chunks=50, pause=lambda: release.wait(0.05)))
    provider = _files_provider(server.host, private_key_pem)
    try:
        with pytest.raises(ProviderError) as caught:
            _download(provider, f"https://{server.host}/v1/files/abc", max_seconds=0.3)
    finally:
        release.set()
    assert (caught.value.permanent, caught.value.code) == (False, "timeout")


def _redirect_to(location: str):
    def handle(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return handle


def test_a_redirect_off_vonages_hosts_is_refused_without_following_it(file_server, private_key_pem):
    elsewhere = file_server(_chunked)
    # The aimed host redirects to another port: another host as far as trust goes.
    server = file_server(_redirect_to(f"https://{elsewhere.host}/steal"))
    provider = _files_provider(server.host, private_key_pem)
    with pytest.raises(ProviderError) as caught:
        _download(provider, f"https://{server.host}/v1/files/abc")
    assert (caught.value.permanent, caught.value.code) == (True, "untrusted-host")
    assert elsewhere.paths == []


def test_a_redirect_within_the_trusted_host_is_followed(file_server, private_key_pem):
    paths: list[str] = []

    def handle(handler) -> None:
        paths.append(handler.path)
        if handler.path == "/v1/files/abc":
            _redirect_to("/v1/files/abc-moved")(handler)
        else:
            _chunked(handler, chunks=2)

    server = file_server(handle)
    provider = _files_provider(server.host, private_key_pem)
    assert _download(provider, f"https://{server.host}/v1/files/abc") == CHUNK * 2
    assert paths == ["/v1/files/abc", "/v1/files/abc-moved"]
    assert all(auth.startswith("Bearer ") for auth in server.authorizations)


def test_endless_redirects_give_up(file_server, private_key_pem):
    server = file_server(_redirect_to("/v1/files/again"))
    provider = _files_provider(server.host, private_key_pem)
    with pytest.raises(ProviderError) as caught:
        _download(provider, f"https://{server.host}/v1/files/abc")
    assert (caught.value.permanent, caught.value.code) == (True, "redirects")
