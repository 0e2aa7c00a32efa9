"""The benchmarks' open-loop driver in C (bench/openloop.c), against a loopback server of known answers.

No timing is asserted: only that every request is sent, counted once, and read the way
the Python driver reads it.
"""

from __future__ import annotations

import shutil
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import load

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="the C driver needs a C compiler"
)

ANSWERS = {
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    b"/missing": b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found",
    # No Content-Length: the body ends when the server closes.
    b"/unsized": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    # Announces more body than it sends, then closes: a failed request, not a 200.
    b"/truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    b"/garbage": b"not http at all",
}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            received += chunk
        path = received.split(b" ", 2)[1].partition(b"?")[0]
        if path == b"/pieces":
            # One response in three writes, with Nagle off and a pause between them, so that
            # the driver most likely reads it in pieces (the assertion holds either way).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answer = ANSWERS[b"/ok"]
            for piece in (answer[:10], answer[10:-1], answer[-1:]):
                self.request.sendall(piece)
                threading.Event().wait(0.005)
            return
        self.request.sendall(ANSWERS[path])


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


@contextmanager
def server() -> Iterator[int]:
    with _Server(("127.0.0.1", 0), _Handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield httpd.server_address[1]
        finally:
            httpd.shutdown()


def maker(paths: list[str], port: int):
    return lambda i: load.get_request(f"{paths[i % len(paths)]}?i={i}", port)


@needs_compiler
def test_the_c_driver_is_built_and_used() -> None:
    assert load.openloop_binary() is not None
    with server() as port:
        result = load.open_loop(port=port, make=maker(["/ok"], port), rate=400, seconds=0.25)
    assert result.driver == "C"
    assert result.statuses == {200: 100}
    assert result.errors == 0
    assert result.requests == 100
    assert len(result.latencies_ms) == 100
    assert all(latency >= 0 for latency in result.latencies_ms)
    assert result.seconds > 0
    assert result.driver_cpu_s > 0


@needs_compiler
def test_each_request_is_read_by_its_status_and_length() -> None:
    paths = ["/ok", "/missing", "/unsized", "/truncated", "/garbage"]
    with server() as port:
        result = load.open_loop(port=port, make=maker(paths, port), rate=500, seconds=0.1)
    # 50 requests, 10 of each path; truncated and garbage answers count as errors.
    assert result.statuses == {200: 20, 404: 10}
    assert result.errors == 20
    assert result.failures == 30
    assert len(result.latencies_ms) == 30


@needs_compiler
def test_a_refused_connection_is_an_error_not_a_hang() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        result = load.open_loop(port=port, make=maker(["/ok"], port), rate=1000, seconds=0.02)
    assert result.errors == 20
    assert result.requests == 0
    assert result.latencies_ms == []


def test_the_report_is_parsed_request_by_request() -> None:
    result = load.parse_openloop("2500000 1200 3400\n200 1500\n0 0\n503 20000\n200 700\n")
    assert result.seconds == 2.5
    assert result.driver_cpu_s == pytest.approx(0.0046)
    assert result.statuses == {200: 2, 503: 1}
    assert result.errors == 1
    assert result.latencies_ms == [1.5, 20.0, 0.7]
    assert result.p(50) == 1.5


@needs_compiler
def test_a_response_in_pieces_is_read_whole() -> None:
    with server() as port:
        result = load.open_loop(port=port, make=maker(["/pieces"], port), rate=200, seconds=0.1)
    assert result.driver == "C"
    assert result.statuses == {200: 20}
    assert result.errors == 0


def test_without_the_c_driver_the_asyncio_one_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "openloop_binary", lambda: None)
    paths = ["/ok", "/missing", "/unsized", "/truncated", "/garbage"]
    with server() as port:
        result = load.open_loop(port=port, make=maker(paths, port), rate=500, seconds=0.1)
    assert result.driver == "asyncio"
    assert result.statuses == {200: 20, 404: 10}
    assert result.errors == 20
