"""Copying recordings and transcripts from Vonage into the default storage, one attempt at a time.

The file streams from Vonage into a spooled temporary file (memory up to 1 MiB, disk
beyond) and from there into storage (a local folder, or a bucket with a multipart
upload): memory stays bounded whatever the file's size. An attempt holds its row for a
lease (``next_attempt_at``), renewed as the file streams in, so the redrive does not start
a second copy while one runs; a worker that dies leaves the row to be taken up once the
lease passes (the outboxes' two minutes).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from django.conf import settings
from django.core.files import File
from django.db.models import F
from django.utils import timezone

from proxy import side_effects
from proxy.models import CopiedFile, Recording, Transcript
from proxy.outbox import LEASE, OutboxKind, Outcome, truncate
from proxy.recordings import AVAILABLE_FOR, RECORDINGS, TRANSCRIPTS, call_for_file
from telephony.provider import ProviderError
from telephony.registry import get_provider

logger = logging.getLogger(__name__)

SPOOL_BYTES = 1024 * 1024
UNKNOWN_CALL = "No call of ours is known for this file's Vonage conversation"


@dataclass(frozen=True)
class _Kind:
    model: type[CopiedFile]
    noun: str
    url_field: str
    extension: str
    max_bytes: Callable[[], int]
    outbox: OutboxKind
    done: Callable[[CopiedFile], None] = lambda row: None


def _transcribed(row: CopiedFile) -> None:
    assert isinstance(row, Transcript)
    side_effects.transcript_stored(row)


_RECORDING = _Kind(Recording, "recording", "recording_url", "mp3", lambda: settings.RECORDING_MAX_BYTES, RECORDINGS)
_TRANSCRIPT = _Kind(
    Transcript,
    "transcript",
    "transcription_url",
    "json",
    lambda: settings.TRANSCRIPT_MAX_BYTES,
    TRANSCRIPTS,
    _transcribed,
)


def recording_download(*, recording_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at copying a pending recording into storage."""
    return _copy(_RECORDING, recording_id, now or timezone.now())


def transcript_download(*, transcript_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at copying a pending transcript into storage; tell the marketplace once it is."""
    return _copy(_TRANSCRIPT, transcript_id, now or timezone.now())


def _copy(kind: _Kind, pk: int, now: datetime) -> Outcome:
    row = kind.model._default_manager.filter(pk=pk).first()
    if row is None or row.status != CopiedFile.Status.PENDING:
        return Outcome.skipped("not pending")
    if kind.outbox.retry.exhausted(row.attempts) or row.created_at < now - AVAILABLE_FOR:
        return _fail(kind, row, f"Gave up after {row.attempts} attempts: {row.last_error}")
    # Due only: a row another worker holds (its lease) or waiting on a backoff is left alone.
    if not kind.outbox.claim(pk, now=now, attempts=F("attempts") + 1):
        return Outcome.skipped("claimed by another worker")
    attempt = row.attempts + 1
    if row.conversation_id is None and not _link(kind, row):
        return _retry_or_fail(kind, row, attempt, UNKNOWN_CALL, now=now, permanent=False)
    url = getattr(row, kind.url_field)
    lease = _Lease(kind, pk, attempt)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            size = get_provider().download_file(
                url,
                _Renewing(spool, lease),
                max_bytes=kind.max_bytes(),
                max_seconds=settings.RECORDING_DOWNLOAD_SECONDS,
            )
        except ProviderError as exc:
            return _retry_or_fail(kind, row, attempt, str(exc), now=now, permanent=exc.permanent)
        spool.seek(0)
        # Storing may take as long as the download did: hold the row for that, once.
        lease.renew(extra=timedelta(seconds=settings.RECORDING_DOWNLOAD_SECONDS))
        try:
            row.file.save(f"{row.recording_uuid}.{kind.extension}", File(spool), save=False)
        except Exception as exc:
            # Storage unreachable (a bucket's outage): the file is still at Vonage; try again later.
            logger.warning("%s %s: storage refused the file", kind.noun, row.recording_uuid, exc_info=True)
            return _retry_or_fail(kind, row, attempt, f"Storage: {type(exc).__name__}", now=now, permanent=False)
    stored = kind.model._default_manager.filter(pk=pk, status=CopiedFile.Status.PENDING, attempts=attempt).update(
        status=CopiedFile.Status.DOWNLOADED, file=row.file.name, size=size, last_error="", next_attempt_at=None
    )
    if not stored:
        # Failed or deleted meanwhile (staff, retention): keep nothing behind its back.
        row.file.delete(save=False)
        return Outcome.skipped("changed while copying")
    row.refresh_from_db()
    kind.done(row)
    logger.info("%s %s copied (%s bytes)", kind.noun, row.recording_uuid, size)
    return Outcome.done()


class _Lease:
    """The hold of one attempt on its row (``next_attempt_at``), moved on while it works."""

    def __init__(self, kind: _Kind, pk: int, attempt: int) -> None:
        self.kind, self.pk, self.attempt = kind, pk, attempt
        self.renewed = time.monotonic()

    def renew(self, *, extra: timedelta = timedelta(0)) -> None:
        # Only this attempt's own hold: a row failed, deleted or taken over meanwhile is left alone.
        self.kind.model._default_manager.filter(
            pk=self.pk, status=CopiedFile.Status.PENDING, attempts=self.attempt
        ).update(next_attempt_at=timezone.now() + LEASE + extra)
        self.renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self.renewed >= LEASE.total_seconds() / 3:
            self.renew()


class _Renewing:
    """The file a download writes into: passes writes on, renewing the lease as data comes."""

    def __init__(self, into: IO[bytes], lease: _Lease) -> None:
        self.into, self.lease = into, lease

    def write(self, data: bytes) -> int:
        self.lease.renew_if_due()
        return self.into.write(data)


def _link(kind: _Kind, row: CopiedFile) -> bool:
    """Attach the row to its call and conversation, found by its Vonage conversation uuid."""
    call = call_for_file(row.conversation_uuid)
    if call is None:
        return False
    kind.model._default_manager.filter(pk=row.pk).update(call=call, conversation_id=call.conversation_id)
    row.call, row.conversation_id = call, call.conversation_id
    return True


def _retry_or_fail(
    kind: _Kind, row: CopiedFile, attempt: int, error: str, *, now: datetime, permanent: bool
) -> Outcome:
    if permanent or kind.outbox.retry.exhausted(attempt):
        return _fail(kind, row, error)
    delay = kind.outbox.retry.delay(attempt)
    # The redrive honours this too, so a lost retry waits its backoff instead of a minute.
    kind.model._default_manager.filter(pk=row.pk, status=CopiedFile.Status.PENDING).update(
        last_error=truncate(error), next_attempt_at=now + timedelta(seconds=delay)
    )
    return Outcome.retry(delay, error)


def _fail(kind: _Kind, row: CopiedFile, error: str) -> Outcome:
    kind.model._default_manager.filter(pk=row.pk, status=CopiedFile.Status.PENDING).update(
        status=CopiedFile.Status.FAILED, last_error=truncate(error), next_attempt_at=None
    )
    logger.warning("%s %s copy failed: %s", kind.noun, row.recording_uuid, error)
    return Outcome.failed(error)
