"""Reads for the try-it page: who can call, and what the sandbox account holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.models import Participant
from proxy.phone import mask, pretty
from telephony.models import SandboxCall, SandboxFailure, SandboxMessage, SandboxNumber


@dataclass(frozen=True)
class CallerChoice:
    participant_id: int
    label: str


def caller_choices(*, limit: int = 100) -> list[CallerChoice]:
    """Participants of open conversations: each can dial their proxy number to reach the other."""
    participants = Participant.objects.live().select_related("conversation__service").order_by("-created_at")[:limit]
    return [
        CallerChoice(
            participant_id=p.pk,
            label=(
                f"{p.name or 'participant'} ({mask(p.real_number)}) dials {pretty(p.proxy_number_id)}"
                f"{' (has a PIN)' if p.pin else ''}"
                f" · {p.conversation.service.name} · {p.conversation.external_id or str(p.conversation_id)[:8]}"
            ),
        )
        for p in participants
    ]


def participant_call_numbers(*, participant_id: int) -> tuple[str, str, str] | None:
    """(caller, proxy number, PIN or "") for a participant picked on the page."""
    row = Participant.objects.filter(pk=participant_id).values_list("real_number", "proxy_number", "pin").first()
    return (row[0], str(row[1]), row[2] or "") if row else None


def sandbox_state(*, limit: int = 20) -> dict[str, Any]:
    return {
        "sandbox_messages": list(SandboxMessage.objects.all()[:limit]),
        "numbers": list(SandboxNumber.objects.all()[:limit]),
        "calls": list(SandboxCall.objects.all()[:limit]),
        "failures": list(SandboxFailure.objects.filter(remaining__gt=0)),
    }
