"""NCCOs the product returns to Vonage, built with the SDK's action models (validated by ``telephony.ncco``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from vonage_voice.models import ncco as actions
from vonage_voice.models.connect_endpoints import PhoneEndpoint
from vonage_voice.models.input_types import Dtmf

from proxy.models import Service
from proxy.selectors import Route

DEFAULT_LANGUAGE = "en-US"
GENERIC_UNKNOWN_TEXT = "Sorry, this number is not in service. Goodbye."
GENERIC_UNAVAILABLE_TEXT = "Sorry, we cannot connect your call right now. Please try again later."


def _dump(models: list[BaseModel]) -> list[dict[str, Any]]:
    return [m.model_dump(by_alias=True, exclude_none=True, mode="json") for m in models]


def _talk(text: str, service: Service | None) -> actions.Talk:
    if service is None:
        return actions.Talk(text=text, language=DEFAULT_LANGUAGE)
    return actions.Talk(text=text, language=service.language, style=service.voice_style or None)


def talk_ncco(text: str, service: Service | None) -> list[dict[str, Any]]:
    return _dump([_talk(text, service)])


def ncco_for_route(route: Route, *, public_url: str) -> list[dict[str, Any]]:
    """The NCCO for an answer request: connect a known caller, else a spoken message only."""
    service = route.service
    if route.kind == "ended":
        return talk_ncco(service.ended_text if service else GENERIC_UNKNOWN_TEXT, service)
    if route.kind != "connect" or route.callee is None or service is None or route.conversation is None:
        return talk_ncco(service.unknown_caller_text if service else GENERIC_UNKNOWN_TEXT, service)
    callee = route.callee
    steps: list[BaseModel] = []
    if service.greeting_text:
        steps.append(_talk(service.greeting_text, service))
    if route.conversation.record:
        steps.append(_talk(service.recording_notice_text, service))
        steps.append(
            actions.Record(
                format="mp3", split="conversation", channels=2, eventUrl=[f"{public_url}/webhooks/recording"]
            )
        )
    steps.append(
        actions.Connect(
            endpoint=[PhoneEndpoint(number=callee.real_number)],
            from_=callee.proxy_number_id,
            eventType="synchronous",
            timeout=service.connect_timeout,
            limit=min(service.call_time_limit, 7200),
            eventUrl=[f"{public_url}/webhooks/event"],
        )
    )
    return _dump(steps)


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
    talk = actions.Talk(text=text, language=service.language, style=service.voice_style or None, bargeIn=True)
    ask = actions.Input(
        type=["dtmf"],
        dtmf=Dtmf(maxDigits=PIN_MAX_DIGITS, timeOut=PIN_INPUT_TIMEOUT, submitOnHash=True),
        eventUrl=[event_url],
    )
    return _dump([talk, ask])
