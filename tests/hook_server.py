"""A real marketplace endpoint on 127.0.0.1 for hook and callback tests (no mocked HTTP client).

It speaks HTTP/1.1 with keep-alive, records every request (headers, body, the client's
address, so tests can tell a reused connection), and answers with whatever
``reply`` says: a status, headers and a body, or ``HANG`` to say nothing until the test
ends (a timeout), or ``DRIP`` to send a valid start and then stall.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


HANG = "hang"
DRIP = "drip"

Responder = Callable[[dict[str, Any]], "Reply | str"]


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the product hangs up on replies it refuses: that is the point


class HookServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # Told of every new ``reply`` (service_hook: the hook timeout to match).
        self.on_reply: Callable[[Reply | str | Responder], None] | None = None
        self.reply = Reply(204)
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                    "json": json.loads(body) if body else None,
                    "client": self.client_address,
                }
                server.requests.append(request)
                reply = server.reply(request) if callable(server.reply) else server.reply
                if reply == HANG:
                    server.release.wait(30)
                    self.close_connection = True
                    return
                if reply == DRIP:
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"{")
                    self.wfile.flush()
                    server.release.wait(30)
                    self.close_connection = True
                    return
                assert isinstance(reply, Reply)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in reply.headers and "Transfer-Encoding" not in reply.headers:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.url = f"{self.base}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def reply(self) -> Reply | str | Responder:
        return self._reply

    @reply.setter
    def reply(self, value: Reply | str | Responder) -> None:
        self._reply = value
        if self.on_reply is not None:
            self.on_reply(value)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def hook_server() -> Iterator[HookServer]:
    server = HookServer()
    try:
        yield server
    finally:
        server.close()


@contextmanager
def service_hook(settings: Any, service: Any, *, url_field: str, secret: str | None = None) -> Iterator[HookServer]:
    """A hook server on loopback as ``service``'s ``url_field`` (``intercept_url``,
    ``out_of_session_url``), let through the address guard. The hook timeout is short
    (0.3 s) while the server is told to stay silent or stall, so those tests end quickly;
    otherwise the configured one (2 s by default), so that a loaded machine does not turn a prompt
    reply into a timeout (CI once saw a 403 arrive after 0.3 s)."""
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    configured = settings.HOOK_TIMEOUT
    with hook_server() as server:
        server.on_reply = lambda reply: setattr(settings, "HOOK_TIMEOUT", 0.3 if reply in (HANG, DRIP) else configured)
        server.on_reply(server.reply)
        setattr(service, url_field, server.url)
        if secret is not None:
            service.callback_secret = secret
        service.save()
        yield server


def signature_ok(request: dict[str, Any], secret: str, *, position: int = 0) -> bool:
    """Whether the request's ``X-Signature`` carries, at ``position``, the signature made with ``secret``."""
    timestamp = request["headers"]["X-Signature-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    signatures = request["headers"]["X-Signature"].split(",")
    return len(signatures) > position and hmac.compare_digest(signatures[position], f"sha256={expected}")
