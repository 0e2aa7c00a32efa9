"""Outbound HTTP to addresses a tenant gave us (callback and hook URLs), guarded.

Such URLs never reach private, loopback or link-local addresses (unless
``CALLBACK_ALLOW_PRIVATE_NETWORKS``): every address the host resolves to is checked, and
again at connect time so that DNS cannot swap in an internal address between the check
and the request. This module knows nothing of the product: it is an adapter.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError


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
