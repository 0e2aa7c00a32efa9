"""Staff console: recordings and transcripts.

Every staff member sees that a recording or transcript exists, its status and why a copy
failed. Only those with ``proxy.play_recording`` (Administrators, not Operators) play a
recording or read a transcript, and each play or read is written to the admin log: the
audio and the text are personal data. Files are streamed through the console, never
linked as public media.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from proxy.admin_support import STATUS_LABELS, ReadOnlyMixin
from proxy.models import CopiedFile, Recording, Transcript
from proxy.recordings import copied_file_retry

PLAY_PERMISSION = "proxy.play_recording"
# A transcript larger than this is shown cut (the file stays whole in storage).
TRANSCRIPT_SHOWN_BYTES = 512 * 1024
SPEAKERS = {0: "Caller", 1: "Callee"}


def can_play(request: HttpRequest) -> bool:
    return request.user.has_perm(PLAY_PERMISSION)


def transcript_lines(raw: bytes) -> list[tuple[str, str]]:
    """(speaker, sentence) in time order from Vonage's transcript JSON: one channel per side
    of the split recording, channel 0 the caller. Anything else reads as one raw block."""
    try:
        document = json.loads(raw)
        timed = [
            (float(sentence.get("timestamp") or 0), SPEAKERS.get(index, f"Channel {index}"), str(sentence["sentence"]))
            for index, channel in enumerate(document["channels"])
            for sentence in channel["transcript"]
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        return [("", raw.decode("utf-8", "replace"))]
    return [(speaker, sentence) for _, speaker, sentence in sorted(timed, key=lambda item: item[0])]


class CopiedFileAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("created_at", "call_link", "status_label", "size", "attempts", "last_error")
    list_filter = ("status",)
    search_fields = ("recording_uuid", "call__uuid", "conversation_uuid")
    list_select_related = ("call",)
    actions = ("retry",)
    readonly_fields = (
        "recording_uuid",
        "call_link",
        "conversation",
        "conversation_uuid",
        "status_label",
        "size",
        "attempts",
        "last_error",
        "next_attempt_at",
        "created_at",
    )
    fields = readonly_fields

    @display(description="Call")
    def call_link(self, obj: CopiedFile) -> str:
        if obj.call_id is None:
            return "—"
        return format_html(
            '<a class="underline" href="{}">{}</a>',
            reverse("admin:proxy_call_change", args=[obj.call_id]),
            obj.call.uuid[:8] if obj.call else "",
        )

    @display(description="Status", label=STATUS_LABELS)
    def status_label(self, obj: CopiedFile) -> str:
        return obj.status

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"proxy.change_{self.model._meta.model_name}")

    @action(description="Copy the selected failed files again", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        retried = 0
        for row in queryset:
            if copied_file_retry(row=row):
                self.log_change(request, row, "Retried by staff")
                retried += 1
        skipped = len(queryset) - retried
        text = f"Copying {retried} again."
        if skipped:
            text += f" {skipped} left as they were (not failed, or at a URL that is not Vonage's)."
        self.message_user(request, text, messages.SUCCESS if retried else messages.WARNING)

    def _stream(self, request: HttpRequest, row: CopiedFile, *, content_type: str, what: str) -> FileResponse:
        if not can_play(request):
            raise PermissionDenied
        if row.status != CopiedFile.Status.DOWNLOADED or not row.file:
            raise Http404(f"This {what} has not been copied.")
        response = FileResponse(row.file.open("rb"), content_type=content_type)
        response["Cache-Control"] = "private, no-store"
        return response


@admin.register(Recording)
class RecordingAdmin(CopiedFileAdmin):
    change_form_after_template = "admin/console/recording_player.html"

    def get_urls(self) -> list[URLPattern]:
        audio = path("<int:pk>/audio/", self.admin_site.admin_view(self.audio_view), name="proxy_recording_audio")
        return [audio, *super().get_urls()]

    def audio_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """Plays the copied file to staff who may play recordings; each play goes to the admin log.

        A request for a later part of the file (a seek) is the same play and is not logged again.
        """
        recording = get_object_or_404(Recording, pk=pk)
        response = self._stream(request, recording, content_type="audio/mpeg", what="recording")
        if request.headers.get("Range", "bytes=0-").replace(" ", "") in ("bytes=0-", ""):
            self.log_change(request, recording, "Played the recording")
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        recording = self.get_object(request, object_id)
        extra_context = dict(extra_context or {}, can_play=can_play(request))
        if recording is not None:
            extra_context["transcript"] = Transcript.objects.filter(recording_uuid=recording.recording_uuid).first()
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Transcript)
class TranscriptAdmin(CopiedFileAdmin):
    change_form_after_template = "admin/console/transcript_link.html"

    def get_urls(self) -> list[URLPattern]:
        read = path("<int:pk>/read/", self.admin_site.admin_view(self.read_view), name="proxy_transcript_read")
        raw = path("<int:pk>/file/", self.admin_site.admin_view(self.file_view), name="proxy_transcript_file")
        return [read, raw, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {}, can_play=can_play(request))
        return super().change_view(request, object_id, form_url, extra_context)

    def read_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        """The transcript as text, to staff who may read transcripts; each read goes to the admin log."""
        transcript = get_object_or_404(Transcript, pk=pk)
        if not can_play(request):
            raise PermissionDenied
        if transcript.status != CopiedFile.Status.DOWNLOADED or not transcript.file:
            raise Http404("This transcript has not been copied.")
        with transcript.file.open("rb") as handle:
            raw = handle.read(TRANSCRIPT_SHOWN_BYTES + 1)
        self.log_change(request, transcript, "Read the transcript")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Transcript of recording {transcript.recording_uuid}",
            "opts": self.model._meta,
            "original": transcript,
            "lines": transcript_lines(raw[:TRANSCRIPT_SHOWN_BYTES]),
            "cut": len(raw) > TRANSCRIPT_SHOWN_BYTES,
        }
        response = TemplateResponse(request, "admin/console/transcript.html", context)
        response["Cache-Control"] = "private, no-store"
        return response

    def file_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """Vonage's JSON as stored; logged like a read."""
        transcript = get_object_or_404(Transcript, pk=pk)
        response = self._stream(request, transcript, content_type="application/json", what="transcript")
        self.log_change(request, transcript, "Downloaded the transcript")
        return response
