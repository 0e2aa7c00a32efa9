"""The sandbox over HTTPS: a WSGI app on the engine, and a TLS server to run it.

``serve_sandbox()`` starts it on 127.0.0.1 at a free port, in a background thread,
with a certificate from a throwaway ``trustme`` CA. Point the real SDK at it with
``VONAGE_API_HOST`` / ``VONAGE_REST_HOST`` = ``server.host`` and trust the CA through
``REQUESTS_CA_BUNDLE`` = ``server.ca_path`` (requests reads it for every session).

Tests run inside a transaction on one database connection; ``share_connection=True``
lends the caller's connection to the server threads (as Django's LiveServerThread does
for in-memory SQLite), so the server sees the test's rows and its writes roll back
with the test. The client waits for each answer, so the threads never use the
connection at the same time; an injected timeout touches the database before it
starts holding, never after.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import trustme
from django.db import close_old_connections, connections

from telephony.sandbox.engine import sandbox_handle
from telephony.sandbox.wire import SandboxRequest, reply_json

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    420: "Method Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}
MAX_BODY = 1024 * 1024


def _read_request(environ: dict[str, Any]) -> SandboxRequest:
    params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(min(length, MAX_BODY)) if length else b""
    body: Any = None
    content_type = environ.get("CONTENT_TYPE", "")
    if raw and "json" in content_type:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    elif raw:
        params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return SandboxRequest(
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO", "/"),
        params=params,
        json=body,
        authorization=environ.get("HTTP_AUTHORIZATION", ""),
    )


def make_app(
    *, stopping: threading.Event | None = None, connection: Any = None, seen: list[SandboxRequest] | None = None
) -> Callable:
    """The sandbox as a WSGI callable.

    ``connection``: a Django connection to use in every thread; ``seen``: a list that
    receives every request (tests check what the SDK really sent).
    """
    stopping = stopping or threading.Event()

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if connection is not None:
            connections["default"] = connection
        request = _read_request(environ)
        if seen is not None:
            seen.append(request)
        try:
            reply = sandbox_handle(request)
        finally:
            if connection is None:
                close_old_connections()
        if reply.is_timeout:
            stopping.wait(reply.hold_seconds)
        body = reply.body if isinstance(reply.body, bytes) else reply_json(reply)
        headers = [("Content-Length", str(len(body)))]
        if reply.body is not None:
            headers.append(("Content-Type", reply.content_type))
        start_response(f"{reply.status} {_REASONS.get(reply.status, 'Status')}", headers)
        return [body]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@dataclass
class SandboxServer:
    host: str  # "127.0.0.1:<port>", as the SDK's api_host / rest_host want it
    ca_path: str
    ca: trustme.CA
    requests: list[SandboxRequest]

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"


@contextmanager
def serve_sandbox(*, port: int = 0, share_connection: bool = False, ca_file: str = "") -> Iterator[SandboxServer]:
    """Serve the sandbox over TLS on 127.0.0.1 in a background thread until the block ends.

    The test CA's certificate is written to ``ca_file`` (default: a temporary file).
    """
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    stopping = threading.Event()
    seen: list[SandboxRequest] = []
    connection = None
    if share_connection:
        connection = connections["default"]
        connection.inc_thread_sharing()
    httpd = make_server(
        "127.0.0.1",
        port,
        make_app(stopping=stopping, connection=connection, seen=seen),
        server_class=_ThreadingServer,
        handler_class=_Quiet,
    )
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        ca_path = Path(ca_file) if ca_file else Path(tmp) / "sandbox-ca.pem"
        ca_path.parent.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(ca_path))
        try:
            yield SandboxServer(host=f"127.0.0.1:{httpd.server_address[1]}", ca_path=str(ca_path), ca=ca, requests=seen)
        finally:
            stopping.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
            if connection is not None:
                connection.dec_thread_sharing()
