"""The call player: Vonage's side of one inbound call, played against a running server.

It sends the signed answer webhook (GET with query parameters, Vonage's default),
validates the NCCO it gets with the SDK's models (``telephony.ncco.ncco_validate``) and runs
it: ``talk``/``stream``/``wait``/``conversation`` are narrated, ``record`` starts a
recording whose record event is posted when the call ends (and, when it asks for a
``transcription``, the transcription webhook after it, with a transcript file in the
sandbox), ``input`` and ``notify`` post to their ``eventUrl`` and follow a returned NCCO (at each
``input`` the caller keys in the next of the ``pins`` given, then nothing),
``connect`` "rings" the other party and plays the requested outcome; a phone endpoint's
``onAnswer`` NCCO is fetched and played to the callee before they are bridged. Along
the way it posts the event webhooks Vonage would (started, ringing, answered, then
completed with duration and price, or busy / unanswered / failed for the connected leg;
a synchronous connect may get an NCCO back).

Time is simulated: nothing sleeps. Events carry timestamps on a virtual clock that starts
now and advances by ringing time, speech and ``duration``.

Transports (``harness.transports``): real HTTP or Django's test client. URLs in NCCOs
are followed by path and query on the player's own server: the player plays against ``base``.

Every leg is also written to the sandbox's call table (``on_leg``), so call control and
the try-it page see the calls the player made.
"""

from __future__ import annotations

import json
import math
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

# Re-exported: the command, the page and the tests take the transports from here.
from harness.transports import Answer, ClientTransport, HttpTransport, PlayerError, Transport

__all__ = [
    "OUTCOMES",
    "Answer",
    "CallPlayer",
    "ClientTransport",
    "HttpTransport",
    "Leg",
    "PlayResult",
    "PlayerError",
    "Transport",
    "call_play",
]

OUTCOMES = ("answered", "busy", "unanswered", "failed")
RATE_PER_MINUTE = Decimal("0.01270000")
RING_SECONDS = 4
MAX_ACTIONS = 50
APPLICATION_ID = "sandbox-application"
# What the two people "say" in a played call, as a transcript has it: (channel, sentence),
# channel 0 the caller's side of the split recording, 1 the callee's.
SPOKEN = (
    (0, "Hello, is that you? I am at the front door."),
    (1, "Yes, I will be down in two minutes."),
    (0, "Great, see you then."),
)

# What Vonage sends as ``from`` for a withheld caller ID.
WITHHELD_CALLER = "Unknown"

# Where the answer webhook says what a marketplace hook decided (webhooks.views).
HOOK_OUTCOME_HEADER = "X-Hook-Outcome"


@dataclass
class Leg:
    uuid: str
    conversation_uuid: str
    direction: str
    from_number: str
    to_number: str
    status: str = "started"
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration: int | None = None
    price: str = ""


@dataclass
class Step:
    """One webhook the player sent, for the timeline."""

    at: str
    method: str
    path: str
    payload: dict[str, Any]
    status: int
    response: Any = None


@dataclass
class PlayResult:
    transcript: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    nccos: list[Any] = field(default_factory=list)
    legs: list[Leg] = field(default_factory=list)
    rejected: list[Step] = field(default_factory=list)
    # What a marketplace hook decided for the call, as the answer webhook reported it.
    hook: str = ""
    error: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def connected(self) -> Leg | None:
        """The first leg the NCCO connected (its ``to`` is who was rung, ``from`` the caller ID shown)."""
        return next((leg for leg in self.legs if leg.direction == "outbound"), None)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _price(seconds: int) -> str:
    return f"{RATE_PER_MINUTE * math.ceil(seconds / 60):.8f}"


def _speech_seconds(text: str) -> int:
    return max(1, math.ceil(len(text) / 15))


class CallPlayer:
    def __init__(
        self,
        transport: Transport,
        *,
        secret: str = "",
        recording_host: str = "api.nexmo.com",
        on_leg: Callable[[Leg], None] | None = None,
        new_recording: Callable[[str], str] | None = None,
        new_transcript: Callable[[str, list[tuple[int, str]]], str] | None = None,
        clock: datetime | None = None,
    ) -> None:
        self.transport = transport
        self.secret = secret
        self.recording_host = recording_host
        self.on_leg = on_leg or (lambda leg: None)
        # Returns the id of the file a record action made, given the call's uuid.
        self.new_recording = new_recording or (lambda call_uuid: str(uuidlib.uuid4()))
        # Returns the id of a transcript file, given the call's uuid and (channel, sentence)s.
        self.new_transcript = new_transcript or (lambda call_uuid, sentences: str(uuidlib.uuid4()))
        self.now = clock or datetime.now(UTC)
        self.result = PlayResult()
        self.pins: deque[str] = deque()

    # --- plumbing -------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self.result.transcript.append(line)

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if body else {}
        if self.secret:
            from django.conf import settings

            from webhooks.signatures import sign_voice_webhook

            # The server refuses tokens for another application once VONAGE_APPLICATION_ID is set.
            application_id = settings.VONAGE_APPLICATION_ID or APPLICATION_ID
            token = sign_voice_webhook(body=body, secret=self.secret, application_id=application_id)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _post(self, url: str, payload: dict[str, Any]) -> Answer:
        parts = urlsplit(url)
        path = parts.path or "/"
        body = json.dumps(payload).encode()
        answer = self.transport.send("POST", path, query=parts.query, body=body, headers=self._headers(body))
        response = _json_or_none(answer.body)
        step = Step(_iso(self.now), "POST", path, payload, answer.status, response)
        self.result.steps.append(step)
        if not 200 <= answer.status < 300:
            self.result.rejected.append(step)
            self._say(f"    ! {path} answered HTTP {answer.status}")
        return answer

    def _advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def _leg_event(self, leg: Leg, status: str, url: str, **extra: Any) -> Answer:
        leg.status = status
        payload = {
            "from": leg.from_number,
            "to": leg.to_number,
            "uuid": leg.uuid,
            "conversation_uuid": leg.conversation_uuid,
            "status": status,
            "direction": leg.direction,
            "timestamp": _iso(self.now),
            **extra,
        }
        self.on_leg(leg)
        answer = self._post(url, payload)
        self._say(f"    event {status} ({leg.direction} leg) -> HTTP {answer.status}")
        return answer

    def _complete(self, leg: Leg, url: str) -> None:
        start = leg.answered_at or self.now
        leg.duration = max(0, int((self.now - start).total_seconds()))
        leg.price = _price(leg.duration)
        leg.ended_at = self.now
        self._leg_event(
            leg,
            "completed",
            url,
            start_time=_iso(start),
            end_time=_iso(self.now),
            duration=str(leg.duration),
            rate=f"{RATE_PER_MINUTE:.8f}",
            price=leg.price,
            network="12345",
            disconnected_by="user",
        )

    def _validated(self, ncco: Any, source: str) -> list[dict[str, Any]]:
        from telephony.ncco import InvalidNcco, ncco_validate

        try:
            ncco_validate(ncco)
        except InvalidNcco as error:
            raise PlayerError(f"invalid NCCO from {source}: {error}", code=3) from error
        self.result.nccos.append(ncco)
        return list(ncco)

    # --- the call ---------------------------------------------------------------------------
    def play(
        self,
        *,
        caller: str,
        proxy_number: str,
        outcome: str = "answered",
        duration: int = 30,
        pins: Sequence[str] = (),
    ) -> PlayResult:
        """Play one call; ``pins``: what the caller keys in at each ``input``, in order."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        self.pins = deque(pins)
        try:
            self._play(caller=caller, proxy_number=proxy_number, outcome=outcome, duration=duration)
        except PlayerError as error:
            self.result.error = str(error)
            self.result.exit_code = error.code
            self._say(f"!! {error}")
        else:
            if self.result.rejected:
                self.result.exit_code = 1
                self.result.error = f"{len(self.result.rejected)} webhook(s) were not accepted"
        return self.result

    def _play(self, *, caller: str, proxy_number: str, outcome: str, duration: int) -> None:
        inbound = Leg(str(uuidlib.uuid4()), f"CON-{uuidlib.uuid4()}", "inbound", caller, proxy_number)
        self.result.legs.append(inbound)
        self._say(f"Call from {caller} to {proxy_number} (leg {inbound.uuid})")
        query = {
            "to": proxy_number,
            "from": caller,
            "uuid": inbound.uuid,
            "conversation_uuid": inbound.conversation_uuid,
            "region_url": "https://api-us-3.vonage.com",
            "endpoint_type": "phone",
        }
        answer = self.transport.send("GET", "/webhooks/answer", query=urlencode(query), headers=self._headers(b""))
        body = _json_or_none(answer.body)
        self.result.steps.append(Step(_iso(self.now), "GET", "/webhooks/answer", query, answer.status, body))
        self._say(f"  answer webhook -> HTTP {answer.status}")
        self.result.hook = answer.header(HOOK_OUTCOME_HEADER)
        if self.result.hook:
            self._say(f"  marketplace hook {self.result.hook}")
        if answer.status != 200:
            raise PlayerError(f"the answer webhook answered HTTP {answer.status}", code=1)
        ncco = self._validated(body, "the answer webhook")
        self._say(f"  NCCO: {', '.join(a['action'] for a in ncco)}")
        event_url = "/webhooks/event"
        self._leg_event(inbound, "started", event_url)
        self._leg_event(inbound, "ringing", event_url)
        inbound.answered_at = self.now
        self._leg_event(inbound, "answered", event_url)
        records: list[tuple[dict[str, Any], datetime]] = []
        self._run(ncco, inbound, records, outcome=outcome, duration=duration)
        self._say("  caller hangs up")
        self._complete(inbound, event_url)
        for action, started in records:
            self._record_event(action, inbound, started)

    def _run(
        self,
        ncco: list[dict[str, Any]],
        inbound: Leg,
        records: list[tuple[dict[str, Any], datetime]],
        *,
        outcome: str,
        duration: int,
    ) -> None:
        queue = list(ncco)
        played = 0
        while queue:
            played += 1
            if played > MAX_ACTIONS:
                raise PlayerError(f"more than {MAX_ACTIONS} NCCO actions: a loop?", code=3)
            action = queue.pop(0)
            kind = action["action"]
            replacement: Any = None
            if kind == "talk":
                self._say(f'  caller hears: "{action["text"]}"')
                self._advance(_speech_seconds(action["text"]))
            elif kind == "stream":
                self._say(f"  caller hears audio from {action['streamUrl'][0]}")
                self._advance(5)
            elif kind == "wait":
                self._say(f"  caller waits {action.get('timeout', 10)} s")
                self._advance(float(action.get("timeout", 10)))
            elif kind == "conversation":
                self._say(f"  caller joins conversation {action['name']!r} for {duration} s")
                self._advance(duration)
            elif kind == "record":
                self._say("  recording starts")
                records.append((action, self.now))
            elif kind == "input":
                replacement = self._input(action, inbound)
            elif kind == "notify":
                replacement = self._notify(action)
            elif kind == "connect":
                replacement = self._connect(action, inbound, outcome=outcome, duration=duration)
                outcome = "answered"  # the outcome asked for applies to the first connect only
            else:
                self._say(f"  ({kind}: nothing to play)")
            if replacement is not None:
                queue = replacement

    def _replacement(self, answer: Answer, source: str) -> list[dict[str, Any]] | None:
        body = _json_or_none(answer.body)
        if isinstance(body, list) and body:
            self._say(f"  {source} returned a new NCCO")
            return self._validated(body, source)
        return None

    def _input(self, action: dict[str, Any], inbound: Leg) -> list[dict[str, Any]] | None:
        keys = self.pins.popleft() if self.pins else ""
        if keys:
            # What was keyed is not written out: it may be a PIN.
            self._say(f"  caller is asked for input and presses {len(keys)} key{'s' if len(keys) != 1 else ''}")
        else:
            self._say("  caller is asked for input and presses nothing")
        self._advance(5)
        payload = {
            "from": inbound.from_number,
            "to": inbound.to_number,
            "uuid": inbound.uuid,
            "conversation_uuid": inbound.conversation_uuid,
            "dtmf": {"digits": keys, "timed_out": not keys},
            "speech": {"results": []},
            "timestamp": _iso(self.now),
        }
        url = (action.get("eventUrl") or ["/webhooks/event"])[0]
        return self._replacement(self._post(url, payload), "the input event")

    def _notify(self, action: dict[str, Any]) -> list[dict[str, Any]] | None:
        answer = self._post(action["eventUrl"][0], dict(action["payload"]))
        self._say(f"  notify -> HTTP {answer.status}")
        return self._replacement(answer, "the notify event")

    def _connect(
        self, action: dict[str, Any], inbound: Leg, *, outcome: str, duration: int
    ) -> list[dict[str, Any]] | None:
        endpoint = action["endpoint"][0]
        target = endpoint.get("number") or endpoint.get("uri") or endpoint.get("user") or "?"
        caller_id = str(action.get("from") or "a random number of the application")
        leg = Leg(str(uuidlib.uuid4()), inbound.conversation_uuid, "outbound", caller_id, str(target))
        self.result.legs.append(leg)
        url = (action.get("eventUrl") or ["/webhooks/event"])[0]
        self._say(f"  connect: ringing {endpoint.get('type', 'phone')} {target}, showing caller ID {caller_id}")
        self._leg_event(leg, "started", url)
        self._leg_event(leg, "ringing", url)
        if outcome == "answered":
            self._advance(RING_SECONDS)
            leg.answered_at = self.now
            self._leg_event(leg, "answered", url)
            on_answer = endpoint.get("onAnswer") or {}
            if on_answer.get("url"):
                self._on_answer(on_answer["url"], leg, target=str(target))
            self._say(f"  {target} answers; they talk for {duration} s")
            self._advance(duration)
            self._say(f"  {target} hangs up")
            self._complete(leg, url)
            return None
        timeout = int(action.get("timeout") or 60)
        detail = {"busy": "", "unanswered": "timeout", "failed": "cannot_route"}[outcome]
        self._advance(timeout if outcome == "unanswered" else 2)
        extra = {"detail": detail} if detail else {}
        self._say(f"  {target} does not take the call: {outcome}")
        answer = self._leg_event(leg, outcome, url, **extra)
        if action.get("eventType") == "synchronous":
            return self._replacement(answer, f"the {outcome} event")
        return None

    def _on_answer(self, url: str, leg: Leg, *, target: str) -> None:
        """Vonage runs the onAnswer NCCO on the callee's leg before joining it to the call."""
        parts = urlsplit(url)
        query = {
            "to": leg.to_number,
            "from": leg.from_number,
            "uuid": leg.uuid,
            "conversation_uuid": leg.conversation_uuid,
        }
        full_query = "&".join(filter(None, [parts.query, urlencode(query)]))
        path = parts.path or "/"
        answer = self.transport.send("GET", path, query=full_query, headers=self._headers(b""))
        body = _json_or_none(answer.body)
        step = Step(_iso(self.now), "GET", path, query, answer.status, body)
        self.result.steps.append(step)
        if answer.status != 200:
            self.result.rejected.append(step)
            self._say(f"    ! {path} answered HTTP {answer.status}")
            return
        for action in self._validated(body, "the onAnswer URL"):
            if action["action"] == "talk":
                self._say(f'  {target} hears, before being connected: "{action["text"]}"')
                self._advance(_speech_seconds(action["text"]))
            else:
                self._say(f"  ({action['action']} in the onAnswer NCCO: nothing to play)")

    def _record_event(self, action: dict[str, Any], inbound: Leg, started: datetime) -> None:
        recording_id = self.new_recording(inbound.uuid)
        recording_uuid = str(uuidlib.uuid4())
        payload = {
            "start_time": _iso(started),
            "end_time": _iso(self.now),
            "recording_url": f"https://{self.recording_host}/v1/files/{recording_id}",
            "size": "12222",
            "recording_uuid": recording_uuid,
            "conversation_uuid": inbound.conversation_uuid,
            "timestamp": _iso(self.now),
        }
        url = (action.get("eventUrl") or ["/webhooks/event"])[0]
        answer = self._post(url, payload)
        self._say(f"  record event (recording {recording_id}) -> HTTP {answer.status}")
        transcription = action.get("transcription")
        if isinstance(transcription, dict) and transcription.get("eventUrl"):
            self._transcription_event(transcription, inbound, recording_uuid)

    def _transcription_event(self, transcription: dict[str, Any], inbound: Leg, recording_uuid: str) -> None:
        """Vonage transcribes the recording and posts where the transcript can be fetched."""
        transcript_id = self.new_transcript(inbound.uuid, list(SPOKEN))
        self._advance(10)
        payload = {
            "conversation_uuid": inbound.conversation_uuid,
            "type": "transcription",
            "recording_uuid": recording_uuid,
            "status": "transcribed",
            "transcription_url": f"https://{self.recording_host}/v1/files/{transcript_id}",
        }
        answer = self._post(transcription["eventUrl"][0], payload)
        self._say(f"  transcription event (transcript {transcript_id}) -> HTTP {answer.status}")
        for channel, sentence in SPOKEN:
            self._say(f"    transcript, {'caller' if channel == 0 else 'callee'}: {sentence}")


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def sandbox_leg_recorder(leg: Leg) -> None:
    """Write a leg's state to the sandbox's call table (``on_leg`` for the player)."""
    from telephony.sandbox.voice import call_record

    call_record(
        uuid=leg.uuid,
        conversation_uuid=leg.conversation_uuid,
        direction=leg.direction,
        from_number=leg.from_number,
        to_number=leg.to_number,
        status=leg.status,
        start_time=leg.answered_at,
        end_time=leg.ended_at,
        duration=leg.duration,
        price=leg.price,
        rate=f"{RATE_PER_MINUTE:.8f}" if leg.price else "",
    )


def sandbox_recording(call_uuid: str) -> str:
    """Store a (silent) recording in the sandbox, served at /v1/files/<id>; return its id."""
    from telephony.sandbox.voice import recording_create

    return str(recording_create(call_uuid=call_uuid).id)


def sandbox_transcript(call_uuid: str, sentences: list[tuple[int, str]]) -> str:
    """Store a transcript in the sandbox, served at /v1/files/<id>; return its id."""
    from telephony.sandbox.voice import transcript_create

    return str(transcript_create(call_uuid=call_uuid, sentences=sentences).id)


def call_play(
    *,
    transport: Transport,
    caller: str,
    proxy_number: str,
    outcome: str = "answered",
    duration: int = 30,
    secret: str = "",
    recording_host: str = "",
    record_legs: bool = True,
    pins: Sequence[str] = (),
) -> PlayResult:
    """Play one call; the settings-aware entry point for the command, the page and tests.

    ``pins``: what the caller keys in when asked for input, one entry per prompt.
    """
    from django.conf import settings

    player = CallPlayer(
        transport,
        secret=secret,
        recording_host=recording_host or settings.VONAGE_API_HOST or "api.nexmo.com",
        on_leg=sandbox_leg_recorder if record_legs else None,
        new_recording=sandbox_recording if record_legs else None,
        new_transcript=sandbox_transcript if record_legs else None,
    )
    return player.play(caller=caller, proxy_number=proxy_number, outcome=outcome, duration=duration, pins=pins)
