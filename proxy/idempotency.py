"""Idempotency-Key for conversation creation (IETF httpapi idempotency-key draft).

A key is claimed by one committed INSERT before the work starts, so that of two
concurrent requests with one key exactly one does the work: the unique (service, key)
constraint decides. The claim then stores the 201 it produced, in the transaction that
creates the conversation, or is deleted, so a retry after a 400 or 409 runs afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from proxy.errors import IdempotencyKeyReused, InvalidInput, RequestInProgress
from proxy.models import IdempotencyRecord, Service

MAX_KEY_LENGTH = 255
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
# A claim with no response after this long belongs to a request that died half way.
ABANDONED_AFTER = timedelta(seconds=60)


def idempotency_key_parse(raw: str) -> str:
    """The key of an ``Idempotency-Key`` header; raises InvalidInput naming the header."""
    # The draft makes the value a structured-field string: "abc" and abc are one key.
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput({"Idempotency-Key": [f"Give 1 to {MAX_KEY_LENGTH} characters."]})
    # A structured-field string holds printable ASCII only; a NUL cannot even be stored
    # (PostgreSQL text), and control characters would end up in logs.
    if not _PRINTABLE_ASCII.fullmatch(key):
        raise InvalidInput({"Idempotency-Key": ["Use printable ASCII characters only."]})
    return key


@dataclass(frozen=True)
class Claim:
    record: IdempotencyRecord
    replay: bool


def request_fingerprint(data: Any) -> str:
    """Equal JSON gives an equal fingerprint, whatever the key order, spacing or number spelling
    (1, 1.0 and 1e0 are one JSON number)."""
    canonical = json.dumps(_same_numbers(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _same_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _same_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_numbers(v) for v in value]
    return value


def _ttl() -> timedelta:
    return timedelta(seconds=getattr(settings, "IDEMPOTENCY_TTL", 24 * 3600))


def idempotency_claim(*, service: Service, key: str, fingerprint: str, now: datetime | None = None) -> Claim:
    """Claim ``key`` for a new request, or find the finished one to replay.

    Raises IdempotencyKeyReused (the key came with another body) or RequestInProgress
    (the first request with this key has not finished).
    """
    now = now or timezone.now()
    # A claim deleted between our insert and our read sends us round again; twice is plenty.
    for _ in range(3):
        record = _insert_or_none(service=service, key=key, request_hash=fingerprint, created_at=now)
        if record is not None:
            return Claim(record=record, replay=False)
        with transaction.atomic():
            found = IdempotencyRecord.objects.select_for_update().filter(service=service, key=key).first()
            if found is None:
                continue
            record = found
            expired = record.created_at <= now - _ttl()
            # A claim's response is stored in the commit that creates its conversation, so
            # one without a response after this long created nothing: run it afresh.
            abandoned = record.response_status is None and record.created_at <= now - ABANDONED_AFTER
            if expired or abandoned:
                record.conversation = None
                record.request_hash = fingerprint
                record.created_at = now
                record.response_status = None
                record.response_body = None
                record.save(
                    update_fields=["request_hash", "created_at", "response_status", "response_body", "conversation"]
                )
                return Claim(record=record, replay=False)
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            if record.response_status is None:
                raise RequestInProgress()
            return Claim(record=record, replay=True)
    raise RequestInProgress()


def _insert_or_none(**fields: Any) -> IdempotencyRecord | None:
    """The new record, or None when (service, key) is taken.

    Outside a transaction the INSERT is its own, one round trip; inside one, a
    savepoint keeps a refused INSERT from spoiling the caller's transaction.
    """
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(**fields)
        return IdempotencyRecord.objects.create(**fields)
    except IntegrityError:
        return None


def idempotency_complete(*, claim: Claim, status: int, body: Any, conversation_id: Any = None) -> None:
    """Remember the response of a claimed request, and the conversation it created.

    Call it inside the creating transaction: a conversation then never exists without
    the answer a retry with the same key must get.
    """
    # Round-trip through JSON: what is stored is exactly what clients saw.
    stored = json.loads(json.dumps(body, cls=DjangoJSONEncoder))
    updated = IdempotencyRecord.objects.filter(pk=claim.record.pk, created_at=claim.record.created_at).update(
        response_status=status, response_body=stored, conversation_id=conversation_id
    )
    if not updated:
        # This request ran so long that another took its key over as abandoned: that
        # one does the work. Raised inside the creating transaction, it undoes ours.
        raise RequestInProgress()


def idempotency_release(*, claim: Claim) -> None:
    """Forget a claim whose request did not succeed, so that a retry runs afresh.

    A claim whose conversation exists is kept: a retry must find it, not open another.
    """
    IdempotencyRecord.objects.filter(
        pk=claim.record.pk,
        created_at=claim.record.created_at,
        response_status__isnull=True,
        conversation__isnull=True,
    ).delete()


def idempotency_records_purge(*, now: datetime | None = None) -> int:
    """Delete records past their 24 hours (for a periodic task); returns how many."""
    now = now or timezone.now()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lte=now - _ttl()).delete()
    return deleted
