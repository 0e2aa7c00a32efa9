"""The sandbox's Voice API: call legs (``/v1/calls``) and recordings (``/v1/files``)."""

from __future__ import annotations

import json
import uuid as uuidlib
from datetime import datetime
from typing import Any

from django.utils import timezone

from telephony.models import SandboxCall, SandboxRecording
from telephony.sandbox.wire import Reply, int_param, validation_error, voice_error

FAKE_AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 64  # a few silent MP3 frame headers


def _vonage_time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def call_as_vonage(call: SandboxCall) -> dict:
    """A leg as ``GET /v1/calls/{uuid}`` shows it: strings everywhere, HAL self link."""
    body: dict[str, Any] = {
        "_links": {"self": {"href": f"/v1/calls/{call.uuid}"}},
        "uuid": call.uuid,
        "conversation_uuid": call.conversation_uuid,
        "to": {"type": "phone", "number": call.to_number},
        "from": {"type": "phone", "number": call.from_number},
        "status": call.status,
        "direction": call.direction,
        "rate": call.rate or None,
        "price": call.price or None,
        "duration": None if call.duration is None else str(call.duration),
        "start_time": _vonage_time(call.start_time),
        "end_time": _vonage_time(call.end_time),
        "network": call.network or None,
    }
    return {k: v for k, v in body.items() if v is not None}


def call_record(
    *,
    uuid: str,
    conversation_uuid: str,
    direction: str,
    from_number: str,
    to_number: str,
    status: str,
    **fields: Any,
) -> SandboxCall:
    """Create or update a leg (the call player reports each step of the calls it plays)."""
    call, _ = SandboxCall.objects.update_or_create(
        uuid=uuid,
        defaults={
            "conversation_uuid": conversation_uuid,
            "direction": direction,
            "from_number": from_number,
            "to_number": to_number,
            "status": status,
            **fields,
        },
    )
    return call


def call_create_from_api(*, body: dict) -> Reply:
    """``POST /v1/calls``: an outbound leg the sandbox only records (nobody rings)."""
    to = (body.get("to") or [{}])[0]
    sender = body.get("from") or {}
    if not to.get("number") or not (body.get("ncco") or body.get("answer_url")):
        return validation_error("to", "is required")
    call = call_record(
        uuid=str(uuidlib.uuid4()),
        conversation_uuid=f"CON-{uuidlib.uuid4()}",
        direction="outbound",
        from_number=str(sender.get("number", "")) if isinstance(sender, dict) else "",
        to_number=str(to["number"]),
        status="started",
        start_time=timezone.now(),
    )
    return Reply(
        201,
        {"uuid": call.uuid, "status": "started", "direction": "outbound", "conversation_uuid": call.conversation_uuid},
    )


def calls_list(*, params: dict[str, str]) -> Reply:
    calls = SandboxCall.objects.all()
    if params.get("conversation_uuid"):
        calls = calls.filter(conversation_uuid=params["conversation_uuid"])
    if params.get("status"):
        calls = calls.filter(status=params["status"])
    size = int_param(params.get("page_size"), 100, 1, 100)
    index = int_param(params.get("record_index"), 0, 0, 10**6)
    page = [call_as_vonage(c) for c in calls[index : index + size]]
    return Reply(
        200,
        {
            "count": calls.count(),
            "page_size": size,
            "record_index": index,
            "_links": {"self": {"href": f"/v1/calls?page_size={size}&record_index={index}"}},
            "_embedded": {"calls": page},
        },
    )


_ENDED = {"completed", "busy", "cancelled", "unanswered", "rejected", "failed", "timeout"}
_LEG_ACTIONS = {"hangup", "mute", "unmute", "earmuff", "unearmuff", "transfer"}


def call_route(method: str, uuid: str, sub: str, body: dict) -> Reply:
    call = SandboxCall.objects.filter(uuid=uuid).first()
    if call is None:
        return voice_error(404, "not-found", "Not Found", f"Call {uuid} doesn't exist.")
    if method == "GET" and not sub:
        return Reply(200, call_as_vonage(call))
    if method not in ("PUT", "DELETE"):
        return voice_error(405, "method-not-allowed", "Method Not Allowed", f"{method} is not allowed here.")
    if call.status in _ENDED:
        return voice_error(400, "bad-request", "Bad Request", f"Call {uuid} is not in progress.")
    if sub:
        return _call_media(call, method, sub, body)
    action = body.get("action")
    if action not in _LEG_ACTIONS:
        return validation_error("action", "must be one of " + ", ".join(sorted(_LEG_ACTIONS)))
    if action == "transfer":
        destination = body.get("destination") or {}
        if not (destination.get("ncco") or destination.get("url")):
            return voice_error(400, "bad-request", "Bad Request", "transfer needs destination.ncco or url")
        call.actions = [*call.actions, {"action": "transfer", "destination": destination}]
    else:
        call.actions = [*call.actions, {"action": action}]
    if action == "hangup":
        now = timezone.now()
        call.status = "completed"
        call.end_time = now
        if call.start_time:
            call.duration = int((now - call.start_time).total_seconds())
    call.save()
    return Reply(204)


def _call_media(call: SandboxCall, method: str, sub: str, body: dict) -> Reply:
    kind = sub.strip("/")
    if method == "DELETE":
        call.actions = [*call.actions, {"action": f"stop_{kind}"}]
        call.save(update_fields=["actions"])
        return Reply(200, {"message": f"{kind.capitalize()} stopped", "uuid": call.uuid})
    required = {"talk": "text", "stream": "stream_url", "dtmf": "digits"}[kind]
    if not body.get(required):
        return validation_error(required, "is required")
    call.actions = [*call.actions, {"action": kind, **body}]
    call.save(update_fields=["actions"])
    return Reply(200, {"message": f"{kind.capitalize()} started", "uuid": call.uuid})


def recording_create(*, call_uuid: str) -> SandboxRecording:
    return SandboxRecording.objects.create(call_uuid=call_uuid, content=FAKE_AUDIO)


def transcript_create(*, call_uuid: str, sentences: list[tuple[int, str]]) -> SandboxRecording:
    """A transcript file of a recording: ``sentences`` as (channel, text), one channel per side
    of a split recording. The shape follows Vonage's transcript (channels, each a list of
    sentences with a timestamp and duration in milliseconds); the product keeps the file as is."""
    channels: list[dict[str, Any]] = [{"transcript": [], "duration": 0} for _ in range(2)]
    at = 0
    for channel, sentence in sentences:
        duration = 400 * max(1, len(sentence.split()))
        channels[channel % 2]["transcript"].append(
            {"sentence": sentence, "raw_sentence": sentence.lower(), "timestamp": at, "duration": duration}
        )
        at += duration
    for side in channels:
        side["duration"] = at // 1000
    content = json.dumps({"channels": channels}).encode()
    return SandboxRecording.objects.create(call_uuid=call_uuid, content=content, content_type="application/json")


def recording_file(*, recording_id: str) -> Reply:
    """``GET /v1/files/{id}``: the file's bytes (audio/mpeg, or a transcript's JSON) or Vonage's 404."""
    try:
        recording = SandboxRecording.objects.filter(pk=uuidlib.UUID(recording_id)).first()
    except ValueError:
        recording = None
    if recording is None:
        return voice_error(404, "not-found", "Not Found", "File not found.")
    return Reply(200, bytes(recording.content), content_type=recording.content_type)
