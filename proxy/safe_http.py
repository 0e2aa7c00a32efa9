"""Outbound HTTP to addresses a tenant gave us (callback and hook URLs), guarded.

Such URLs never reach private, loopback or link-local addresses (unless
``CALLBACK_ALLOW_PRIVATE_NETWORKS``): every address the host resolves to is checked, and
again at connect time so that DNS cannot swap in an internal address between the check
and the request. Redirects are never followed. This module knows nothing of the product:
it is an adapter.

Two ways out: ``guarded_session`` (a session of one's own, for the callback worker) and
``post_bounded`` (synchronous hooks, on urllib3 directly: a hard deadline over the whole
exchange, a bounded reply, and connections kept per thread and reused across requests).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.core.signals import setting_changed
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import Timeout


class UnsafeCallbackUrl(ValueError):
    """The URL is malformed or points at an address we refuse to call."""


class HostNotResolved(UnsafeCallbackUrl):
    """The host did not resolve. ``transient`` when the resolver said to try again later
    (EAI_AGAIN: a DNS server down or slow), which a delivery should retry."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# Resolver answers that say nothing about the name itself.
_TRANSIENT_RESOLVER_ERRORS = frozenset(
    code for code in (getattr(socket, "EAI_AGAIN", None), getattr(socket, "EAI_SYSTEM", None)) if code is not None
)


def _allow_private() -> bool:
    return bool(getattr(settings, "CALLBACK_ALLOW_PRIVATE_NETWORKS", False))


# IPv6 prefixes that carry an IPv4 address a gateway connects to: NAT64 (RFC 6052, and the
# local-use prefix of RFC 8215) and 6to4 (2002::/16, ``sixtofour``). Python's own
# is_global judges the IPv6 prefix, not the IPv4 address behind it.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _address_allowed(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        ip = inner  # the address actually reached
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        transient = exc.errno in _TRANSIENT_RESOLVER_ERRORS
        raise HostNotResolved(f"cannot resolve {host!r}: {exc}", transient=transient) from exc
    except UnicodeError as exc:
        raise UnsafeCallbackUrl(f"cannot resolve {host!r}: {exc}") from exc


def _check_addresses(host: str, infos: Iterable[tuple[Any, ...]]) -> None:
    if _allow_private():
        return
    for info in infos:
        address = info[4][0]
        if not _address_allowed(address):
            raise UnsafeCallbackUrl(f"{host!r} resolves to a non-public address ({address})")


def callback_url_check(url: str) -> None:
    """Raise UnsafeCallbackUrl unless ``url`` is http(s) and every address of its host is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeCallbackUrl("callback URLs must be http or https URLs with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeCallbackUrl(str(exc)) from exc
    _check_addresses(parts.hostname, _resolve(parts.hostname, port))


class _GuardedConnectionMixin:
    """Connects only to addresses that pass the check, resolving the host itself."""

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port  # type: ignore[attr-defined]
        try:
            infos = _resolve(host, port)
            _check_addresses(host, infos)
        except UnsafeCallbackUrl as exc:
            raise NewConnectionError(self, str(exc)) from exc  # type: ignore[arg-type]
        last_error: OSError | None = None
        watched = _deadline_sockets.get()
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            if watched is not None:
                watched.append(sock)
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                sock.settimeout(self.timeout)  # type: ignore[attr-defined]
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                last_error = exc
        raise NewConnectionError(self, f"cannot connect to {host}: {last_error}")  # type: ignore[arg-type]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def guarded_session() -> requests.Session:
    """A requests session whose every connection goes through the address guard."""
    session = requests.Session()
    # Environment proxies would make the connection go somewhere the guard never sees.
    session.trust_env = False
    adapter = _GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# The sockets opened under the current ``deadline()``, for its timer to shut down.
_deadline_sockets: ContextVar[list[socket.socket] | None] = ContextVar("_deadline_sockets", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Bound the wall-clock time of the guarded connections opened inside the block.

    A timeout bounds each read, not the exchange: a server that sends one byte just
    inside it, again and again, holds the caller for ever. At ``seconds`` every socket
    opened inside is shut down, so whatever waits on it fails at once (a requests
    ``ConnectionError``). Yields an event that is set once the deadline has struck.
    """
    sockets: list[socket.socket] = []
    struck = threading.Event()

    def strike() -> None:
        struck.set()
        for sock in list(sockets):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    token = _deadline_sockets.set(sockets)
    timer = threading.Timer(seconds, strike)
    timer.daemon = True
    timer.start()
    try:
        yield struck
    finally:
        timer.cancel()
        _deadline_sockets.reset(token)


# --- Synchronous, bounded POSTs (hooks) --------------------------------------------------------


class OutboundFailure(Exception):
    """No usable answer: a refused address, no connection, no reply in time, a reply too large.

    The message says why without the URL's path or query (a tenant's secrets may sit there).
    """


@dataclass(frozen=True)
class BoundedResponse:
    status: int
    body: bytes
    content_type: str


_pooled = threading.local()
# Bumped when the address policy changes: a connection opened under the old policy must
# not be reused under the new one.
_generation = 0
_READ_CHUNK = 8192


def _pool_manager() -> urllib3.PoolManager:
    """This thread's guarded connection pools: their connections stay open between requests.

    urllib3 directly, not requests: a hook is on the caller's time, and requests' own
    machinery cost more CPU than the exchange itself. No environment proxies, no retries.
    """
    held = getattr(_pooled, "held", None)
    if held is not None and held[0] == _generation:
        return held[1]
    if held is not None:
        held[1].clear()
    manager = urllib3.PoolManager(num_pools=32, maxsize=4, retries=False)
    manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    _pooled.held = (_generation, manager)
    return manager


def pooled_connections_drop(**_: Any) -> None:
    """Forget every kept connection (each thread opens new ones on its next request)."""
    global _generation
    _generation += 1


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "CALLBACK_ALLOW_PRIVATE_NETWORKS":
        pooled_connections_drop()


setting_changed.connect(_on_setting_changed)


def _socket_timeout(response: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Bound the next read of the body by what is left of the deadline."""
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _connect_failure(exc: BaseException) -> OutboundFailure:
    if "non-public" in str(exc):
        return OutboundFailure("refused: the host resolves to a non-public address")
    return OutboundFailure(f"cannot connect ({_cause(exc)})")


def post_bounded(
    url: str, *, body: bytes, headers: Mapping[str, str], timeout: float, max_bytes: int
) -> BoundedResponse:
    """POST ``body`` and read the reply, all within ``timeout`` seconds and ``max_bytes``.

    Any status comes back as it is (a redirect is a 3xx, never followed). Raises
    OutboundFailure for a URL that is not http(s), an address the guard refuses, a
    connection that fails, no complete reply within ``timeout``, or a reply over
    ``max_bytes``. The connection goes back to this thread's pool only after a complete
    reply.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundFailure("not an http(s) URL with a host")
    deadline = time.monotonic() + timeout
    try:
        response = _pool_manager().urlopen(
            "POST",
            url,
            body=body,
            headers=dict(headers),
            # total: connecting and waiting for the status line share one budget.
            timeout=Timeout(connect=timeout, read=timeout, total=timeout),
            redirect=False,
            retries=False,
            preload_content=False,
        )
    except NewConnectionError as exc:  # before TimeoutError: urllib3 makes it one
        raise _connect_failure(exc) from None
    except urllib3.exceptions.TimeoutError:
        raise OutboundFailure(f"no answer within {timeout:g} s") from None
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise _connect_failure(exc) from None
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise OutboundFailure(f"reply of {int(declared)} bytes, over {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OutboundFailure(f"no complete reply within {timeout:g} s")
            _socket_timeout(response, remaining)
            chunk = response.read(_READ_CHUNK, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise OutboundFailure(f"reply over {max_bytes} bytes")
            chunks.append(chunk)
    except OutboundFailure:
        _discard(response)
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        _discard(response)
        if isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError):
            raise OutboundFailure(f"no complete reply within {timeout:g} s") from None
        raise OutboundFailure(f"reply unreadable ({_cause(exc)})") from None
    # Read to the end: the connection goes back to the pool for the next request.
    response.release_conn()
    return BoundedResponse(
        status=response.status, body=b"".join(chunks), content_type=response.headers.get("Content-Type", "")
    )


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Unread bytes are left: the connection cannot be reused."""
    response.close()
    response.release_conn()


def _cause(exc: BaseException) -> str:
    """The innermost exception's type: enough to tell failures apart, never a URL."""
    for _ in range(10):
        if exc.__context__ is None:
            break
        exc = exc.__context__
    return type(exc).__name__
