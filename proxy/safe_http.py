"""Outbound HTTP to addresses a tenant gave us (callback and hook URLs), guarded.

Such URLs never reach private, loopback or link-local addresses (unless
``CALLBACK_ALLOW_PRIVATE_NETWORKS``): every address the host resolves to is checked, and
again at connect time so that DNS cannot swap in an internal address between the check
and the request. This module knows nothing of the product: it is an adapter.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
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


def _allow_private() -> bool:
    return bool(getattr(settings, "CALLBACK_ALLOW_PRIVATE_NETWORKS", False))


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
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
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
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
