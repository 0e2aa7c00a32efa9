"""How the call player reaches the server it plays against.

``HttpTransport`` (requests, for ``manage.py simulate_call`` and the end-to-end test) and
``ClientTransport`` (django.test.Client, in-process, for the try-it page, so that a
single-worker server does not wait on itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import requests


class PlayerError(Exception):
    """The call could not be played: ``code`` 2 = server unreachable, 3 = invalid NCCO."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        """A response header, whatever its case ("" when absent)."""
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), "")


class Transport(Protocol):
    def send(self, method: str, path: str, *, query: str = "", body: bytes = b"", headers: dict[str, str]) -> Answer:
        """Send one request to the server; raise PlayerError(code=2) when it cannot be reached."""
        ...


class HttpTransport:
    """Real HTTP to ``base`` (a URL such as http://127.0.0.1:8000)."""

    def __init__(self, base: str, *, timeout: float = 10.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def send(self, method: str, path: str, *, query: str = "", body: bytes = b"", headers: dict[str, str]) -> Answer:
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        try:
            response = self.session.request(method, url, data=body or None, headers=headers, timeout=self.timeout)
        except requests.RequestException as error:
            raise PlayerError(f"cannot reach {self.base}: {type(error).__name__}", code=2) from error
        return Answer(response.status_code, response.content, dict(response.headers))


class ClientTransport:
    """In-process requests through Django's test client, as host ``host``."""

    def __init__(self, *, host: str = "localhost", secure: bool = False) -> None:
        from django.test import Client

        self.client = Client(HTTP_HOST=host, secure=secure)

    def send(self, method: str, path: str, *, query: str = "", body: bytes = b"", headers: dict[str, str]) -> Answer:
        extra: dict[str, Any] = {
            "HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"
        }
        target = f"{path}?{query}" if query else path
        if method == "GET":
            response = self.client.get(target, **extra)
        else:
            response = self.client.generic(method, target, body, content_type="application/json", **extra)
        return Answer(response.status_code, response.content, dict(response.items()))
