"""Concatenated inbound texts: the parts wait a bounded time for each other, then are joined.

Vonage delivers a long SMS as separate requests, one per part, each with its own
``messageId`` and the same ``concat-ref``. Each part is kept (``MessagePart``) in the
webhook's transaction. The part that completes its group joins the group, in part
order, into one text, which goes on as any text would (``messaging.text_receive``).
A group still incomplete when ``MESSAGE_PARTS_WAIT_SECONDS`` is over is joined as it
is, by the timer task its first part queued, or by the outbox redrive if that task was
lost. Concurrent parts of one group are serialised by a lock on the group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from proxy.message_outbox import ASSEMBLE_TASK, parts_wait
from proxy.messaging import InboundText, text_receive
from proxy.models import Message, MessagePart, insert_row
from proxy.outbox import queue_on_commit
from proxy.phone import from_webhook


@dataclass(frozen=True)
class InboundPart:
    """One part of a concatenated SMS as Vonage sent it (numbers as given, at most 64 characters)."""

    message_id: str
    sender_raw: str
    to_raw: str
    ref: str
    total: int
    part: int
    text: str
    encoding: str


def _lock_group(*, sender: str, to: str, ref: str, total: int) -> None:
    """Serialise the parts of one group (PostgreSQL advisory lock until commit).

    SQLite needs none: its IMMEDIATE transactions already admit one writer at a time.
    """
    if connection.vendor != "postgresql":
        return
    key = f"message-parts\x1f{sender}\x1f{to}\x1f{ref}\x1f{total}".encode()
    lock = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock])


def _pending(*, sender: str, to: str, ref: str, total: int) -> list[MessagePart]:
    rows = MessagePart.objects.filter(from_number=sender, to_number=to, ref=ref, total=total)
    return list(rows.order_by("part", "pk"))


def message_part_receive(*, part: InboundPart, now: datetime | None = None) -> Message | None:
    """Keep one part, in the caller's transaction; the joined text once the group is complete.

    A part number already waiting under the same ref starts a new message (refs are
    reused): the earlier parts are joined as they are first.
    """
    now = now or timezone.now()
    _lock_group(sender=part.sender_raw, to=part.to_raw, ref=part.ref, total=part.total)
    pending = _pending(sender=part.sender_raw, to=part.to_raw, ref=part.ref, total=part.total)
    if any(row.part == part.part for row in pending):
        _join(pending, now=now)
        pending = []
    row = MessagePart(
        message_id=part.message_id,
        from_number=part.sender_raw,
        to_number=part.to_raw,
        ref=part.ref,
        total=part.total,
        part=part.part,
        text=part.text,
        encoding=part.encoding,
        received_at=now,
    )
    if not insert_row(row, unless_exists="message_id"):
        # The same (cut-down) Vonage id already waits: a repeat, never an error for Vonage.
        return None
    pending.append(row)
    if len({p.part for p in pending}) == part.total:
        return _join(pending, now=now)
    if len(pending) == 1:
        # The group's timer: join whatever arrived once the wait is over.
        queue_on_commit(ASSEMBLE_TASK, row.pk, countdown=parts_wait().total_seconds())
    return None


@dataclass(frozen=True)
class Joining:
    """What a group's timer came to: the joined text, or how long the group still waits."""

    message: Message | None = None
    due_in: float | None = None


def message_parts_join_due(*, part_id: int, now: datetime | None = None) -> Joining:
    """The timer of ``part_id``'s group: once the wait is over, join what arrived and pass it on.

    Idempotent: a group already joined (by its last part, or another timer) is left alone.
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = MessagePart.objects.filter(pk=part_id).first()
        if row is None:
            return Joining()
        _lock_group(sender=row.from_number, to=row.to_number, ref=row.ref, total=row.total)
        pending = _pending(sender=row.from_number, to=row.to_number, ref=row.ref, total=row.total)
        if not any(p.pk == part_id for p in pending):
            return Joining()
        due = min(p.received_at for p in pending) + parts_wait()
        if due > now:
            return Joining(due_in=(due - now).total_seconds())
        return Joining(message=_join(pending, now=now))


def _join(rows: list[MessagePart], *, now: datetime) -> Message:
    """Join the parts in part order (each part number once) into one text, pass it on, forget the parts."""
    chosen: dict[int, MessagePart] = {}
    for row in sorted(rows, key=lambda r: (r.part, r.pk)):
        chosen.setdefault(row.part, row)
    ordered = [chosen[number] for number in sorted(chosen)]
    encodings = {row.encoding for row in ordered}
    encoding = "binary" if "binary" in encodings else "unicode" if "unicode" in encodings else "text"
    first = ordered[0]
    inbound = InboundText(
        sender=from_webhook(first.from_number),
        to=from_webhook(first.to_number),
        text="".join(row.text for row in ordered) if encoding != "binary" else None,
        encoding=encoding,
        ids=tuple(row.message_id for row in ordered),
        sender_raw=first.from_number,
        to_raw=first.to_number,
        parts_expected=first.total,
        received_at=now,
    )
    message = text_receive(inbound=inbound)
    MessagePart.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return message
