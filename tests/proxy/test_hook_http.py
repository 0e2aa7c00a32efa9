"""The guarded, bounded POST hooks use, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import pytest

from proxy import safe_http
from proxy.safe_http import OutboundFailure, post_bounded
from tests.hook_server import DRIP, HANG, HookServer, Reply, hook_server


@pytest.fixture
def endpoint(settings) -> Iterator[HookServer]:
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    with hook_server() as server:
        yield server


def _post(url: str, *, timeout: float = 2.0, max_bytes: int = 1024) -> safe_http.BoundedResponse:
    return post_bounded(url, body=b'{"a":1}', headers={"X-Test": "1"}, timeout=timeout, max_bytes=max_bytes)


def test_a_reply_comes_back_whole_with_its_status(endpoint):
    endpoint.reply = Reply(200, b'{"ok":true}', {"Content-Type": "application/json"})
    response = _post(endpoint.url)
    assert (response.status, response.body, response.content_type) == (200, b'{"ok":true}', "application/json")
    (request,) = endpoint.requests
    assert request["body"] == b'{"a":1}' and request["headers"]["X-Test"] == "1"


def test_connections_are_kept_and_reused_across_requests(endpoint):
    for _ in range(3):
        assert _post(endpoint.url).status == 204
    clients = {request["client"] for request in endpoint.requests}
    assert len(endpoint.requests) == 3 and len(clients) == 1


def test_a_changed_address_policy_drops_kept_connections(endpoint, settings):
    _post(endpoint.url)
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(OutboundFailure, match="non-public"):
        _post(endpoint.url)
    assert len(endpoint.requests) == 1


def test_redirects_are_returned_not_followed(endpoint):
    endpoint.reply = Reply(302, b"", {"Location": endpoint.base + "/elsewhere"})
    assert _post(endpoint.url).status == 302
    assert [r["path"] for r in endpoint.requests] == ["/hooks"]


def test_a_private_address_is_refused_unless_allowed(endpoint, settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(OutboundFailure, match="non-public address"):
        _post(endpoint.url)
    assert endpoint.requests == []


def test_a_declared_huge_body_is_refused_unread(endpoint):
    endpoint.reply = Reply(200, b"x" * 5000)
    with pytest.raises(OutboundFailure, match="5000 bytes, over 1024"):
        _post(endpoint.url)


def test_an_undeclared_huge_body_is_cut_off(endpoint):
    def chunked(request):
        return Reply(200, b"2000\r\n" + b"y" * 8192 + b"\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"})

    endpoint.reply = chunked
    with pytest.raises(OutboundFailure, match="over 1024 bytes"):
        _post(endpoint.url)


def test_a_compressed_body_is_bounded_after_decompression(endpoint):
    bomb = gzip.compress(b"z" * 100_000)
    endpoint.reply = Reply(200, bomb, {"Content-Encoding": "gzip"})
    with pytest.raises(OutboundFailure, match="over 1024 bytes"):
        _post(endpoint.url)


def test_silence_is_a_timeout_within_the_deadline(endpoint):
    endpoint.reply = HANG
    started = time.monotonic()
    with pytest.raises(OutboundFailure, match=r"no answer within 0\.3 s"):
        _post(endpoint.url, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_a_reply_that_stalls_half_way_is_cut_at_the_deadline(endpoint):
    endpoint.reply = DRIP
    started = time.monotonic()
    with pytest.raises(OutboundFailure, match=r"within 0\.3 s"):
        _post(endpoint.url, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_nothing_listening_is_a_failure_not_an_exception(settings):
    settings.CALLBACK_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(OutboundFailure, match="cannot connect"):
        _post("http://127.0.0.1:9/hooks")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https:///nohost"])
def test_urls_that_are_not_http_are_refused(url):
    with pytest.raises(OutboundFailure, match="not an http"):
        _post(url)
