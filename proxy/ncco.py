"""NCCOs the product returns to Vonage, built with the SDK's action models (validated by ``telephony.ncco``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from vonage_voice.models import ncco as actions
from vonage_voice.models.connect_endpoints import PhoneEndpoint

from proxy.models import Conversation, Participant, Service
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
    return connect_ncco(service=service, conversation=route.conversation, callee=route.callee, public_url=public_url)


def connect_ncco(
    *, service: Service, conversation: Conversation, callee: Participant, public_url: str
) -> list[dict[str, Any]]:
    """Connect the caller to ``callee`` (caller ID: ``callee``'s proxy number): greeting, recording, connect.

    ``conversation`` needs only ``record``, ``ring_timeout`` and ``call_time_limit`` (the
    route read's columns); the last two fall back to the service's defaults.
    """
    steps: list[BaseModel] = []
    if service.greeting_text:
        steps.append(_talk(service.greeting_text, service))
    if conversation.record:
        steps.append(_talk(service.recording_notice_text, service))
        steps.append(
            actions.Record(
                format="mp3", split="conversation", channels=2, eventUrl=[f"{public_url}/webhooks/recording"]
            )
        )
    steps.append(
        _connect(
            service,
            number=callee.real_number,
            caller_id=callee.proxy_number_id,
            ring_timeout=conversation.ring_timeout,
            call_time_limit=conversation.call_time_limit,
            public_url=public_url,
        )
    )
    return _dump(steps)


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
) -> actions.Connect:
    # Synchronous: a leg that fails, is busy or unanswered gets the caller a message
    # (webhooks.services.event_receive answers its event with one).
    return actions.Connect(
        endpoint=[PhoneEndpoint(number=number)],
        from_=caller_id,
        eventType="synchronous",
        timeout=ring_timeout or service.connect_timeout,
        limit=min(call_time_limit or service.call_time_limit, 7200),
        eventUrl=[f"{public_url}/webhooks/event"],
    )


def not_allowed_ncco(service: Service) -> list[dict[str, Any]]:
    """Said to a caller the intercept hook blocks (and nothing else: no connect)."""
    return talk_ncco(service.not_allowed_text, service)


def unavailable_ncco(service: Service | None) -> list[dict[str, Any]]:
    """Said to the caller when the other party does not answer, is busy or fails."""
    return talk_ncco(service.unavailable_text if service else GENERIC_UNAVAILABLE_TEXT, service)
