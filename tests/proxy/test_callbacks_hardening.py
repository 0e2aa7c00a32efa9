"""Callback delivery against hostile or flaky marketplaces (issue 18).

A temporary DNS failure is retried, not failed for good; a server that drips its answer
or sends a huge body cannot hold a worker past the delivery's total time; reaching the
task's soft time limit is an ordinary failed attempt with a retry.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from unittest import mock

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from proxy import safe_http
from proxy.delivery import callbacks as delivery_module
from proxy.delivery.callbacks import callback_deliver
from proxy.models import CallbackDelivery

pytestmark = pytest.mark.django_db


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with ``behaviour(conn)``."""

    def __init__(self, behaviour) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.recv(65536)
            self.behaviour(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def drip_headers(server: RawServer, conn: socket.socket) -> None:
    """A status line, then one header byte every 0.2 s for a minute: each read is quick."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(300):
        if server.stop.is_set():
            return
        conn.sendall(b"a")
        server.sent += 1
        time.sleep(0.2)


def huge_body(server: RawServer, conn: socket.socket) -> None:
    """200 MiB announced and streamed as fast as the client takes it."""
    size = 200 * 1024 * 1024
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
    chunk = b"x" * 65536
    for _ in range(size // len(chunk)):
        conn.sendall(chunk)
        server.sent += len(chunk)


@pytest.fixture
def raw_server(request) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


@pytest.fixture
def local(settings, service):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    service.callback_secret = "s"
    service.save()
    return service


def _pending(service, url: str) -> CallbackDelivery:
    return CallbackDelivery.objects.create(
        service=service, event="conversation.closed", payload={"id": "e1", "type": "x", "data": {}}, url=url
    )


@pytest.mark.parametrize("raw_server", [drip_headers], indirect=True)
def test_a_server_that_drips_its_answer_is_cut_off_at_the_total_time(local, raw_server, monkeypatch):
    monkeypatch.setattr(delivery_module, "TOTAL_SECONDS", 1.5)
    delivery = _pending(local, raw_server.url)
    started = time.monotonic()
    outcome = callback_deliver(delivery_id=delivery.pk)
    elapsed = time.monotonic() - started
    assert outcome.result == "retry"
    assert elapsed < 10, elapsed
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.last_error


@pytest.mark.parametrize("raw_server", [huge_body], indirect=True)
def test_a_huge_response_body_is_not_read(local, raw_server):
    delivery = _pending(local, raw_server.url)
    started = time.monotonic()
    outcome = callback_deliver(delivery_id=delivery.pk)
    assert outcome.result == "done"
    assert time.monotonic() - started < 10
    assert raw_server.sent < 50 * 1024 * 1024


def test_a_temporary_dns_failure_is_retried(local, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    delivery = _pending(local, "https://hooks.example.com/x")
    failure = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    with mock.patch("proxy.safe_http.socket.getaddrinfo", side_effect=failure):
        outcome = callback_deliver(delivery_id=delivery.pk)
    assert outcome.result == "retry"
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert "name resolution" in delivery.last_error


def test_a_private_address_is_still_refused_for_good(local, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    delivery = _pending(local, "http://10.0.0.5/x")
    assert callback_deliver(delivery_id=delivery.pk).result == "failed"


def test_the_soft_time_limit_is_an_ordinary_failed_attempt(local):
    delivery = _pending(local, "http://127.0.0.1:9/x")

    def stuck(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    with mock.patch.object(safe_http.requests.Session, "post", side_effect=stuck):
        outcome = callback_deliver(delivery_id=delivery.pk)
    assert outcome.result == "retry"
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.attempts == 1
    assert "time limit" in delivery.last_error.lower()
    assert delivery.next_attempt_at is not None


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
        "64:ff9b:1::a00:5",  # local-use NAT64 prefix
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:5::1",  # 6to4 of 10.0.0.5
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:c0a8:1::1",  # 6to4 of 192.168.0.1
    ],
)
def test_nat64_and_6to4_addresses_of_private_ipv4_are_refused(settings, address):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(safe_http.UnsafeCallbackUrl):
        safe_http.callback_url_check(f"http://[{address}]/x")


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])
def test_nat64_and_6to4_addresses_of_public_ipv4_pass(settings, address):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    safe_http.callback_url_check(f"http://[{address}]/x")
