"""Recording download: fetch a file a record event announced and keep it with the recording."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.files.base import ContentFile
from django.db.models import F
from django.utils import timezone

from proxy.models import Recording
from proxy.outbox import Outcome, truncate
from proxy.recordings import AVAILABLE_FOR, RECORDINGS
from telephony.provider import ProviderError
from telephony.registry import get_provider

logger = logging.getLogger(__name__)


def recording_download(*, recording_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at downloading a pending recording into ``Recording.file``."""
    now = now or timezone.now()
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is None or recording.status != Recording.Status.PENDING:
        return Outcome.skipped("not pending")
    if RECORDINGS.retry.exhausted(recording.attempts) or recording.created_at < now - AVAILABLE_FOR:
        return _fail(recording, f"Gave up after {recording.attempts} attempts: {recording.last_error}")
    if recording.next_attempt_at is not None and recording.next_attempt_at > now:
        return Outcome.skipped("not due, or being downloaded by another worker")
    if not RECORDINGS.claim(recording.pk, now=now, attempts=F("attempts") + 1):
        return Outcome.skipped("claimed by another worker")
    attempt = recording.attempts + 1
    try:
        content = get_provider().download_recording(recording.recording_url)
    except ProviderError as exc:
        if exc.permanent or RECORDINGS.retry.exhausted(attempt):
            return _fail(recording, str(exc))
        delay = RECORDINGS.retry.delay(attempt)
        # The redrive honours this too, so a lost retry waits its backoff instead of a minute.
        Recording.objects.filter(pk=recording.pk).update(
            last_error=truncate(str(exc)), next_attempt_at=now + timedelta(seconds=delay)
        )
        return Outcome.retry(delay, str(exc))
    recording.refresh_from_db()
    recording.file.save(f"{recording.recording_uuid}.mp3", ContentFile(content), save=False)
    recording.status = Recording.Status.DOWNLOADED
    recording.size = recording.size or len(content)
    recording.last_error = ""
    recording.next_attempt_at = None
    recording.save(update_fields=["file", "status", "size", "last_error", "next_attempt_at"])
    logger.info("recording %s downloaded (%s bytes)", recording.recording_uuid, len(content))
    return Outcome.done()


def _fail(recording: Recording, error: str) -> Outcome:
    Recording.objects.filter(pk=recording.pk, status=Recording.Status.PENDING).update(
        status=Recording.Status.FAILED, last_error=truncate(error), next_attempt_at=None
    )
    logger.warning("recording %s download failed: %s", recording.recording_uuid, error)
    return Outcome.failed(error)
