from __future__ import annotations

import functools
import io
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse


def _too_large() -> JsonResponse:
    return JsonResponse(
        {
            "code": "request_too_large",
            "detail": f"Request bodies are limited to {settings.MAX_REQUEST_BODY_BYTES} bytes.",
        },
        status=413,
    )


class RequestSizeLimitMiddleware:
    """Answer 413 to a request body over ``MAX_REQUEST_BODY_BYTES`` before anything reads it.

    A chunked body has no Content-Length, and Django would read it as empty; it is read
    here up to the limit instead, and given a Content-Length when it fits.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.MAX_REQUEST_BODY_BYTES
        raw_length = request.META.get("CONTENT_LENGTH")
        if raw_length not in (None, ""):
            try:
                length = int(raw_length)
            except ValueError:
                return JsonResponse({"detail": "Invalid Content-Length."}, status=400)
            if length > limit:
                return _too_large()
        elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = self._read_chunked(request, limit)
            if body is None:
                return _too_large()
            request._stream = LimitedStream(io.BytesIO(body), len(body))  # type: ignore[attr-defined,assignment]
            request.META["CONTENT_LENGTH"] = str(len(body))
        return self.get_response(request)

    @staticmethod
    def _read_chunked(request: HttpRequest, limit: int) -> bytes | None:
        """The de-chunked body, or None when it is over ``limit``."""
        environ = getattr(request, "environ", None)
        # Under WSGI Django wraps the input in a zero-length stream; the server's own
        # reader (gunicorn de-chunks) is in the environ. Under ASGI the body is spooled.
        stream = environ["wsgi.input"] if environ and "wsgi.input" in environ else request._stream  # type: ignore[attr-defined]
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = stream.read(min(64 * 1024, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > limit else b"".join(chunks)


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def _trusted_in(address: str, networks: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in network for network in networks)


# A server sees few peers (its proxies, a load balancer): each is parsed and matched once,
# not on every request (issue 17). Keyed by the networks too (a tuple, config/settings.py),
# so a changed setting counts.
# Forwarded hops, which anyone can write, are not kept.
_trusted_peer = functools.lru_cache(maxsize=256)(_trusted_in)


class TrustedProxyMiddleware:
    """X-Forwarded-Proto and X-Forwarded-For count only when a configured proxy sent them.

    From any other peer they are dropped before Django reads them: otherwise a client
    could claim https (SECURE_PROXY_SSL_HEADER) or any address it likes. Sets
    ``request.client_ip``: the nearest address in X-Forwarded-For that is not one of our
    proxies (the client as our proxies saw it), else the peer itself.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.client_ip = client_ip(request)  # type: ignore[attr-defined]
        return self.get_response(request)


_FORWARDED = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def client_ip(request: HttpRequest, *args: object) -> str:
    """The client's address (see TrustedProxyMiddleware); also django-axes' AXES_CLIENT_IP_CALLABLE.

    Drops the forwarded headers of a peer that is not a trusted proxy, as a side effect,
    so that it is safe to call first thing.
    """
    cached = getattr(request, "client_ip", None)
    if isinstance(cached, str):
        return cached
    peer = request.META.get("REMOTE_ADDR", "") or ""
    if not _trusted_peer(peer, settings.TRUSTED_PROXY_NETWORKS):
        for name in _FORWARDED:
            request.META.pop(name, None)
        return peer
    chain = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(chain):
        if not _trusted_in(hop, settings.TRUSTED_PROXY_NETWORKS):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from beyond our proxies: fall back to what we know
    return peer
