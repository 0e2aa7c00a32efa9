"""NCCOs the product returns to Vonage, built with the SDK's action models (validated by ``telephony.ncco``).

The answer webhook's usual NCCO (a greeting, then the connect, for a conversation that
does not record) is written as plain dicts: exactly the models' dump, for values checked
as the models check them; anything else is built with the models (``connect_ncco``).

Consent to recording, for both people. A recorded conversation's caller NCCO is
``[greeting?, talk(notice), record, connect(phone, onAnswer=notice URL)]``, and the
onAnswer URL (``/webhooks/record-notice``) answers ``[talk(notice)]``. From Vonage's NCCO
semantics:
- ``talk`` is synchronous unless ``bargeIn`` is set, and the notice never sets it: the
  ``record`` after it starts only once the caller has heard the whole notice;
- ``record`` with no end condition records the caller's conversation while the next
  actions run, until the call ends;
- the callee's leg runs the phone endpoint's ``onAnswer`` NCCO *before that call is joined
  to the existing conversation*: the callee's voice enters what is recorded only once
  they have heard the whole notice (the onAnswer NCCO is that one ``talk``, nothing that
  could cut it short). Until then the recording holds the caller, who has heard it, and
  the ringback.
So nobody is recorded before hearing the notice. A conversation that does not record
costs nothing here: no notice, no record, no onAnswer (the answer webhook is the hot path).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from vonage_voice.models import ncco as actions
from vonage_voice.models.connect_endpoints import OnAnswer, PhoneEndpoint
from vonage_voice.models.input_types import Dtmf

from proxy.models import MAX_CALL_TIME_LIMIT, Conversation, Participant, Service
from proxy.selectors import Route

DEFAULT_LANGUAGE = "en-US"
GENERIC_UNKNOWN_TEXT = "Sorry, this number is not in service. Goodbye."
GENERIC_UNAVAILABLE_TEXT = "Sorry, we cannot connect your call right now. Please try again later."
GENERIC_NOTICE_TEXT = "This call is recorded."
RECORD_NOTICE_PATH = "/webhooks/record-notice"


class Transcription(BaseModel):
    """The ``record`` action's ``transcription`` (VONAGE.md), which the SDK's model lacks."""

    language: str | None = None
    eventUrl: list[str]
    sentimentAnalysis: bool | None = None


class RecordAction(actions.Record):
    """The SDK's ``Record`` with ``transcription``: the SDK's validation ignores the field, so
    what is sent still validates against its models."""

    transcription: Transcription | None = None


def _dump(models: list[BaseModel]) -> list[dict[str, Any]]:
    return [m.model_dump(by_alias=True, exclude_none=True, mode="json") for m in models]


def _voice(service: Service) -> tuple[str | None, int | None]:
    """The language and voice style a service's texts are said in (no style: Vonage's default)."""
    return service.language, service.voice_style or None


def _talk(text: str, service: Service | None) -> actions.Talk:
    if service is None:
        return actions.Talk(text=text, language=DEFAULT_LANGUAGE)
    language, style = _voice(service)
    return actions.Talk(text=text, language=language, style=style)


def talk_ncco(text: str, service: Service | None) -> list[dict[str, Any]]:
    return _dump([_talk(text, service)])


def ncco_for_route(route: Route, *, public_url: str) -> list[dict[str, Any]]:
    """The NCCO for an answer request: connect a known caller, else a spoken message only."""
    service = route.service
    if route.kind == "ended":
        return talk_ncco(service.ended_text if service else GENERIC_UNKNOWN_TEXT, service)
    if route.kind != "connect" or route.callee is None or service is None or route.conversation is None:
        return talk_ncco(service.unknown_caller_text if service else GENERIC_UNKNOWN_TEXT, service)
    return connect_ncco(service=service, conversation=route.conversation, callee=route.callee, public_url=public_url)


def connect_ncco(
    *, service: Service, conversation: Conversation, callee: Participant, public_url: str
) -> list[dict[str, Any]]:
    """Connect the caller to ``callee`` (caller ID: ``callee``'s proxy number): greeting, recording, connect.

    ``conversation`` needs only ``record``, ``ring_timeout`` and ``call_time_limit`` (the
    route read's columns); the last two fall back to the service's defaults.
    """
    if not conversation.record:
        plain = _plain_connect_ncco(service=service, conversation=conversation, callee=callee, public_url=public_url)
        if plain is not None:
            return plain
    return _modelled_connect_ncco(service=service, conversation=conversation, callee=callee, public_url=public_url)


def _modelled_connect_ncco(
    *, service: Service, conversation: Conversation, callee: Participant, public_url: str
) -> list[dict[str, Any]]:
    """``connect_ncco`` built with the SDK's models (which refuse what Vonage would)."""
    steps: list[BaseModel] = []
    if service.greeting_text:
        steps.append(_talk(service.greeting_text, service))
    on_answer = None
    if conversation.record:
        steps.append(_notice(service))
        steps.append(_record(service, public_url))
        # The callee hears the notice too, before being bridged (see the module's docstring).
        on_answer = OnAnswer(url=f"{public_url}{RECORD_NOTICE_PATH}?service={service.pk}")
    steps.append(
        _connect(
            service,
            number=callee.real_number,
            caller_id=callee.proxy_number_id,
            ring_timeout=conversation.ring_timeout,
            call_time_limit=conversation.call_time_limit,
            public_url=public_url,
            on_answer=on_answer,
        )
    )
    return _dump(steps)


# The SDK's pattern for a phone number (vonage_utils.types.PhoneNumber), with ASCII digits
# only (its \d would take other scripts' digits: those go through the models), and its
# longest text for a talk action (actions.Talk.text).
_PHONE_NUMBER = re.compile(r"[1-9][0-9]{6,14}")
_MAX_TALK_TEXT = 1500


def _plain_connect_ncco(
    *, service: Service, conversation: Conversation, callee: Participant, public_url: str
) -> list[dict[str, Any]] | None:
    """The NCCO of a conversation that does not record (the greeting, if any, then the
    connect) as plain dicts: exactly what the models' dump gives, without building and
    dumping three models on every answer (a seventh of the answer's instructions, issue 17).

    Only values the models would take, checked as they check them: anything else gives
    None, and the models' path then raises as it always did.
    """
    number, caller_id = callee.real_number, callee.proxy_number_id
    timeout, limit = _connect_limits(service, conversation.ring_timeout, conversation.call_time_limit)
    if (
        type(number) is not str
        or type(caller_id) is not str
        or not _PHONE_NUMBER.fullmatch(number)
        or not _PHONE_NUMBER.fullmatch(caller_id)
        or type(timeout) is not int
        or type(limit) is not int
    ):
        return None
    steps: list[dict[str, Any]] = []
    greeting = service.greeting_text
    if greeting:
        talk = _plain_talk(greeting, service)
        if talk is None:
            return None
        steps.append(talk)
    steps.append(
        {
            "endpoint": [{"number": number, "type": "phone"}],
            "from": caller_id,
            "eventType": "synchronous",
            "timeout": timeout,
            "limit": limit,
            "eventUrl": [f"{public_url}/webhooks/event"],
            "action": "connect",
        }
    )
    return steps


def _plain_talk(text: str, service: Service) -> dict[str, Any] | None:
    """``_talk(text, service)`` dumped, or None when the model would refuse a value."""
    language, style = _voice(service)
    if (
        type(text) is not str
        or len(text) > _MAX_TALK_TEXT
        or (language is not None and type(language) is not str)
        or (style is not None and type(style) is not int)
    ):
        return None
    talk: dict[str, Any] = {"text": text}
    if language is not None:
        talk["language"] = language
    if style is not None:
        talk["style"] = style
    talk["action"] = "talk"
    return talk


def _notice(service: Service | None) -> actions.Talk:
    """The recording notice, said in full: ``bargeIn`` off, so nothing cuts it short."""
    if service is None:
        return actions.Talk(text=GENERIC_NOTICE_TEXT, language=DEFAULT_LANGUAGE, bargeIn=False)
    style = service.voice_style if service.record_notice_voice_style is None else service.record_notice_voice_style
    return actions.Talk(
        text=service.record_notice or GENERIC_NOTICE_TEXT,
        language=service.record_notice_language or service.language,
        style=style or None,
        bargeIn=False,
    )


def _record(service: Service, public_url: str) -> RecordAction:
    transcription = None
    if service.transcribe:
        transcription = Transcription(language=service.language, eventUrl=[f"{public_url}/webhooks/transcription"])
    return RecordAction(
        format="mp3",
        split="conversation",
        channels=2,
        eventUrl=[f"{public_url}/webhooks/recording"],
        transcription=transcription,
    )


def record_notice_ncco(service: Service | None) -> list[dict[str, Any]]:
    """What the callee of a recorded conversation hears before being bridged (the onAnswer NCCO):
    the notice alone; the generic one when the service cannot be read."""
    return _dump([_notice(service)])


def connect_number_ncco(*, service: Service, number: str, caller_id: str, public_url: str) -> list[dict[str, Any]]:
    """Connect the caller to any ``number`` (E.164 digits) showing ``caller_id``, with the service's limits."""
    return _dump(
        [
            _connect(
                service,
                number=number,
                caller_id=caller_id,
                ring_timeout=None,
                call_time_limit=None,
                public_url=public_url,
            )
        ]
    )


def _connect(
    service: Service,
    *,
    number: str,
    caller_id: str,
    ring_timeout: int | None,
    call_time_limit: int | None,
    public_url: str,
    on_answer: OnAnswer | None = None,
) -> actions.Connect:
    # Synchronous: a leg that fails, is busy or unanswered gets the caller a message
    # (webhooks.services.event_receive answers its event with one).
    endpoint = PhoneEndpoint(number=number)
    timeout, limit = _connect_limits(service, ring_timeout, call_time_limit)
    if on_answer is not None:
        endpoint.onAnswer = on_answer
    return actions.Connect(
        endpoint=[endpoint],
        from_=caller_id,
        eventType="synchronous",
        timeout=timeout,
        limit=limit,
        eventUrl=[f"{public_url}/webhooks/event"],
    )


def _connect_limits(service: Service, ring_timeout: int | None, call_time_limit: int | None) -> tuple[int, int]:
    """Seconds the callee's phone rings, and the longest call Vonage allows: the
    conversation's own, else the service's defaults."""
    return ring_timeout or service.connect_timeout, min(call_time_limit or service.call_time_limit, MAX_CALL_TIME_LIMIT)


def not_allowed_ncco(service: Service) -> list[dict[str, Any]]:
    """Said to a caller the intercept hook blocks (and nothing else: no connect)."""
    return talk_ncco(service.not_allowed_text, service)


def unavailable_ncco(service: Service | None) -> list[dict[str, Any]]:
    """Said to the caller when the other party does not answer, is busy or fails."""
    return talk_ncco(service.unavailable_text if service else GENERIC_UNAVAILABLE_TEXT, service)


# --- PINs (proxy.pins) ------------------------------------------------------------------------------

# Seconds Vonage waits after the last key (its maximum): people read the PIN from their SMS.
PIN_INPUT_TIMEOUT = 10
PIN_MAX_DIGITS = 6


def pin_prompt_ncco(service: Service, *, event_url: str, lead: str = "") -> list[dict[str, Any]]:
    """Ask for a PIN: the prompt (after ``lead``, e.g. why the last try failed), then DTMF input.

    The caller may key in while the prompt still plays (``bargeIn``); ``#`` submits early.
    """
    text = f"{lead} {service.pin_prompt_text}".strip()[:1500]
    language, style = _voice(service)
    talk = actions.Talk(text=text, language=language, style=style, bargeIn=True)
    ask = actions.Input(
        type=["dtmf"],
        dtmf=Dtmf(maxDigits=PIN_MAX_DIGITS, timeOut=PIN_INPUT_TIMEOUT, submitOnHash=True),
        eventUrl=[event_url],
    )
    return _dump([talk, ask])
