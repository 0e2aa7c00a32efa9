"""Recordings and transcripts, writer side: the outbox kinds of files waiting to be copied
from Vonage, the rows the webhooks announce, and the API paths that serve them.

A record event (or a transcription webhook) becomes a ``Recording`` (``Transcript``) row,
``pending``; a worker (``proxy.delivery.recordings``) copies the file into the default
storage. A URL that is not Vonage's is refused at once: the row is kept, ``failed``, for
staff to see, and nothing is ever fetched from it. A row whose call is not known (yet) is
linked by its Vonage conversation uuid on each attempt, and fails like any other once its
attempts are spent. Nothing stays ``pending`` for ever: the redrive takes up every pending
row past its due time, including those at their last attempt, which the worker then fails.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse

from proxy.models import Call, CopiedFile, Recording, Transcript
from proxy.outbox import OutboxKind, RetryPolicy, outbox_kind, queue_on_commit, truncate

DOWNLOAD_TASK = "proxy.tasks.download_recording"
TRANSCRIPT_TASK = "proxy.tasks.download_transcript"
# Vonage deletes its files after 30 days; trying later is pointless.
AVAILABLE_FOR = timedelta(days=30)
NOT_VONAGE = "Not a Vonage file URL: never fetched"
_RETRY = RetryPolicy(base_seconds=30.0, cap_seconds=1800.0, max_attempts=10)


def _waiting_of(model: type[CopiedFile]) -> Callable[[], QuerySet[Any]]:
    def waiting() -> QuerySet[Any]:
        # Rows at their last attempt are included: their task fails them, so none stays
        # pending for ever. A dead attempt's row is due again at the end of its lease
        # (``LEASE``; a copy in progress renews it as the file streams in), a failed one at its backoff.
        return model._default_manager.filter(status=CopiedFile.Status.PENDING)

    return waiting


RECORDINGS = outbox_kind(
    OutboxKind(
        name="recordings",
        task=DOWNLOAD_TASK,
        retry=_RETRY,
        waiting=_waiting_of(Recording),
        service_field="conversation__service__slug",
    )
)
TRANSCRIPTS = outbox_kind(
    OutboxKind(
        name="transcripts",
        task=TRANSCRIPT_TASK,
        retry=_RETRY,
        waiting=_waiting_of(Transcript),
        service_field="conversation__service__slug",
    )
)


def call_for_file(conversation_uuid: str) -> Call | None:
    """The call a recording or transcript belongs to: the first leg of its Vonage conversation
    that is linked to one of ours."""
    if not conversation_uuid:
        return None
    return (
        Call.objects.filter(conversation_uuid=conversation_uuid, conversation__isnull=False)
        .order_by("created_at", "pk")
        .first()
    )


def _announce(
    model: type[CopiedFile], *, task: str, recording_uuid: str, url_field: str, url: str, trusted: bool, **fields: Any
) -> CopiedFile:
    """Keep one row per ``recording_uuid``: pending and queued, or failed at once for a foreign URL."""
    call = call_for_file(fields.get("conversation_uuid", ""))
    defaults = {
        url_field: truncate(url, 500),
        "call": call,
        "conversation": call.conversation if call else None,
        **fields,
    }
    if not trusted:
        defaults.update(status=CopiedFile.Status.FAILED, last_error=NOT_VONAGE)
    row, created = model._default_manager.get_or_create(recording_uuid=recording_uuid, defaults=defaults)
    if created and trusted:
        queue_on_commit(task, row.pk)
    return row


def recording_announce(*, recording_uuid: str, url: str, trusted: bool, **fields: Any) -> Recording:
    """A record event announced a recording: keep it once and queue its copy (see ``_announce``)."""
    row = _announce(
        Recording,
        task=DOWNLOAD_TASK,
        recording_uuid=recording_uuid,
        url_field="recording_url",
        url=url,
        trusted=trusted,
        **fields,
    )
    assert isinstance(row, Recording)
    return row


def transcript_announce(*, recording_uuid: str, url: str, trusted: bool, **fields: Any) -> Transcript:
    """A transcription webhook announced a recording's transcript: keep it once and queue its copy."""
    row = _announce(
        Transcript,
        task=TRANSCRIPT_TASK,
        recording_uuid=recording_uuid,
        url_field="transcription_url",
        url=url,
        trusted=trusted,
        **fields,
    )
    assert isinstance(row, Transcript)
    return row


def copied_file_retry(*, row: CopiedFile) -> bool:
    """Staff: copy a failed recording or transcript again, with a fresh set of attempts.

    A foreign URL, or none (Vonage could not transcribe), stays failed: nothing is fetched.
    """
    model = type(row)
    task, url_field = (DOWNLOAD_TASK, "recording_url") if model is Recording else (TRANSCRIPT_TASK, "transcription_url")
    updated = (
        model._default_manager.filter(pk=row.pk, status=CopiedFile.Status.FAILED)
        .exclude(last_error=NOT_VONAGE)
        .exclude(**{url_field: ""})
        .update(status=CopiedFile.Status.PENDING, attempts=0, next_attempt_at=None)
    )
    if updated:
        queue_on_commit(task, row.pk)
    return bool(updated)


# --- Where the API serves them -------------------------------------------------------------------


def recording_api_path(recording_uuid: str) -> str:
    return reverse("api:recording-file", kwargs={"recording_uuid": recording_uuid})


def transcript_api_path(recording_uuid: str) -> str:
    return reverse("api:recording-transcript", kwargs={"recording_uuid": recording_uuid})


def newest_copied(rows: Any) -> Any:
    """The newest row of ``rows`` (a prefetched relation) whose file is in storage, or None."""
    copied = [row for row in rows if row.status == CopiedFile.Status.DOWNLOADED and row.file]
    return max(copied, key=lambda row: (row.created_at, row.pk), default=None)
