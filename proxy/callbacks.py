"""Marketplace callbacks: signed JSON POSTs of conversation and call events, from an outbox.

Each event is a ``CallbackDelivery`` row written in the transaction that caused it, with
the exact body that will be sent. A worker POSTs it, signed with HMAC-SHA256 over
``"<timestamp>.<body>"``, and retries with backoff for a day. Callback URLs never reach
private, loopback or link-local addresses (unless ``CALLBACK_ALLOW_PRIVATE_NETWORKS``):
every address the host resolves to is checked, and again at connect time so that DNS
cannot swap in an internal address between the check and the request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F, Q
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from config.celery import backoff_delay
from proxy.models import Call, CallbackDelivery, Conversation, Service
from proxy.outbox import Outcome, truncate

logger = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(days=1)
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
# A claimed delivery is left alone this long (longer than any request can take).
CLAIM_LEASE = timedelta(seconds=120)
TIMEOUT = (3.05, 10.0)
USER_AGENT = "masked-calling-callbacks/1"


class UnsafeCallbackUrl(ValueError):
    """The callback URL is malformed or points at an address we refuse to call."""


# --- URL safety --------------------------------------------------------------------------------


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


def _session() -> requests.Session:
    session = requests.Session()
    # Environment proxies would make the connection go somewhere the guard never sees.
    session.trust_env = False
    adapter = _GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- Payloads and signatures -------------------------------------------------------------------


def callback_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with the service's secret over ``b"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "external_id": conversation.external_id,
        "status": conversation.effective_status,
        "closed_reason": conversation.closed_reason,
        "expires_at": _iso(conversation.expires_at),
        "ended_at": _iso(conversation.ended_at),
        "metadata": conversation.metadata,
    }


def _envelope(event: str, data: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": event, "created_at": _iso(now), "data": data}


def _delivery(service: Service, event: str, data: dict[str, Any], now: datetime) -> CallbackDelivery:
    payload = json.loads(json.dumps(_envelope(event, data, now=now), cls=DjangoJSONEncoder))
    return CallbackDelivery(service=service, event=event, payload=payload, url=service.callback_url, created_at=now)


def callback_create_for_conversation(*, conversation: Conversation, event: str) -> CallbackDelivery | None:
    """Queue ``event`` about ``conversation`` for its service's callback URL, if it has one."""
    service = conversation.service
    if not service.callback_url:
        return None
    delivery = _delivery(service, event, {"conversation": _conversation_data(conversation)}, timezone.now())
    delivery.save()
    return delivery


def callbacks_create_for_conversations(*, conversation_ids: list[Any], event: str) -> list[int]:
    """Set-based: one delivery per ended conversation whose service has a callback URL."""
    now = timezone.now()
    created: list[int] = []
    services: dict[int, Service] = {}
    chunk = 2000
    for start in range(0, len(conversation_ids), chunk):
        conversations = (
            Conversation.objects.filter(pk__in=conversation_ids[start : start + chunk])
            .exclude(service__callback_url="")
            .select_related("service")
        )
        rows = []
        for conversation in conversations:
            service = services.setdefault(conversation.service_id, conversation.service)
            rows.append(_delivery(service, event, {"conversation": _conversation_data(conversation)}, now))
        created.extend(row.pk for row in CallbackDelivery.objects.bulk_create(rows, batch_size=1000))
    return created


def callback_create_for_call(*, call: Call) -> CallbackDelivery | None:
    """Queue ``call.completed`` for the call's service, if it has a callback URL."""
    conversation = call.conversation
    service = conversation.service if conversation else None
    if service is None or not service.callback_url:
        return None
    data = {
        "call": {
            "uuid": call.uuid,
            "conversation_uuid": call.conversation_uuid,
            "status": call.status,
            "direction": call.direction,
            "from_participant": call.from_participant_id,
            "to_participant": call.to_participant_id,
            "started_at": _iso(call.started_at),
            "answered_at": _iso(call.answered_at),
            "ended_at": _iso(call.ended_at),
            "duration": call.duration,
            "price": str(call.price) if call.price is not None else None,
        },
        "conversation": _conversation_data(conversation),  # type: ignore[arg-type]
    }
    delivery = _delivery(service, "call.completed", data, timezone.now())
    delivery.save()
    return delivery


# --- Delivery ----------------------------------------------------------------------------------


def _body(delivery: CallbackDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def callback_deliver(*, delivery_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at POSTing a pending delivery and record how it went."""
    now = now or timezone.now()
    delivery = CallbackDelivery.objects.select_related("service").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != CallbackDelivery.Status.PENDING:
        return Outcome.skipped("not pending")
    if delivery.next_attempt_at and delivery.next_attempt_at > now:
        return Outcome.skipped("not due, or being delivered by another worker")
    claimed = (
        CallbackDelivery.objects.filter(pk=delivery.pk, status=CallbackDelivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(attempts=F("attempts") + 1, next_attempt_at=now + CLAIM_LEASE)
    )
    if not claimed:
        return Outcome.skipped("claimed by another worker")
    attempt = delivery.attempts + 1

    status_code: int | None = None
    try:
        callback_url_check(delivery.url)
    except UnsafeCallbackUrl as exc:
        return _give_up(delivery, f"Refused: {exc}", status_code=None)
    body = _body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Callback-Event": delivery.event,
        "X-Callback-Id": str(delivery.payload.get("id", "")),
        "X-Signature-Timestamp": str(timestamp),
    }
    if delivery.service.callback_secret:
        headers["X-Signature"] = callback_signature(
            secret=delivery.service.callback_secret, timestamp=timestamp, body=body
        )
    try:
        with _session() as session:
            response = session.post(delivery.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        status_code = response.status_code
        if 200 <= status_code < 300:
            CallbackDelivery.objects.filter(pk=delivery.pk).update(
                status=CallbackDelivery.Status.DELIVERED,
                last_status_code=status_code,
                last_error="",
                delivered_at=timezone.now(),
                next_attempt_at=None,
            )
            return Outcome.done(str(status_code))
        error = f"HTTP {status_code}"

    delay = backoff_delay(attempt, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)
    next_attempt = timezone.now() + timedelta(seconds=delay)
    if next_attempt > delivery.created_at + RETRY_WINDOW:
        return _give_up(delivery, f"Gave up after {attempt} attempts over a day: {error}", status_code=status_code)
    CallbackDelivery.objects.filter(pk=delivery.pk, status=CallbackDelivery.Status.PENDING).update(
        last_status_code=status_code, last_error=truncate(error), next_attempt_at=next_attempt
    )
    logger.info("callback %s attempt %s failed (%s); next in %.0fs", delivery.pk, attempt, error, delay)
    return Outcome.retry(delay, error)


def _give_up(delivery: CallbackDelivery, error: str, *, status_code: int | None) -> Outcome:
    CallbackDelivery.objects.filter(pk=delivery.pk).update(
        status=CallbackDelivery.Status.FAILED,
        last_status_code=status_code,
        last_error=truncate(error),
        next_attempt_at=None,
    )
    logger.warning("callback %s failed for good: %s", delivery.pk, error)
    return Outcome.failed(error)


def callback_retry(*, delivery: CallbackDelivery) -> bool:
    """Staff: deliver a failed callback again, with a fresh day of retries.

    The row's ``created_at`` restarts the retry window; the body keeps the event's own
    ``created_at`` and ``id``, so the marketplace can still tell it is the same event.
    """
    from proxy.outbox import enqueue_on_commit
    from proxy.tasks import deliver_callback

    updated = CallbackDelivery.objects.filter(pk=delivery.pk, status=CallbackDelivery.Status.FAILED).update(
        status=CallbackDelivery.Status.PENDING, attempts=0, next_attempt_at=None, created_at=timezone.now()
    )
    if updated:
        enqueue_on_commit(deliver_callback, delivery.pk)
    return bool(updated)
