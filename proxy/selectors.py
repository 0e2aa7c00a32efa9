"""Reads: tenant-scoped look-ups and the routing decision for an inbound call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.db.models import F, QuerySet
from django.utils import timezone

from proxy.models import Call, Conversation, Participant, Service
from virtual_numbers.models import VirtualNumber


def conversations_for_service(*, service: Service) -> QuerySet[Conversation]:
    """Everything a service may see of conversations: its own, never another's."""
    return Conversation.objects.filter(service=service)


def calls_for_conversation(*, conversation: Conversation) -> QuerySet[Call]:
    return Call.objects.filter(conversation=conversation).order_by("-created_at", "-pk")


@dataclass(frozen=True)
class Route:
    """What to do with an inbound call.

    ``connect``: ring ``callee`` (caller ID ``callee.proxy_number_id``);
    ``ended``: the pair belonged to a conversation that is over;
    ``unknown``: nothing matches (``service`` is the owner of the dialled number, if any).
    """

    kind: Literal["connect", "ended", "unknown"]
    service: Service | None = None
    conversation: Conversation | None = None
    callee: Participant | None = None
    caller_id: int | None = None


def route_for_call(*, caller: str | None, proxy_number: str | None, now: datetime | None = None) -> Route:
    """Reverse-map (caller's real number, number dialled) to the other participant.

    The connect case is one indexed read: the partial unique index on open
    (real_number, proxy_number) finds the caller's row, joined to the callee's.
    """
    if not proxy_number:
        return Route(kind="unknown")
    now = now or timezone.now()
    if caller:
        callee = (
            Participant.objects.filter(
                active=True,
                conversation__participants__real_number=caller,
                conversation__participants__proxy_number__number=proxy_number,
                conversation__participants__active=True,
            )
            .exclude(real_number=caller)
            .select_related("conversation", "service")
            .annotate(caller_participant_id=F("conversation__participants__id"))
            .order_by()[:1]
        )
        found = next(iter(callee), None)
        if found is not None:
            if found.conversation.expires_at <= now:
                # Expired before any sweep wrote it down: ended during the cooldown, then unknown.
                cooling_until = found.conversation.expires_at + timedelta(seconds=found.service.cooldown)
                kind: Literal["ended", "unknown"] = "ended" if now < cooling_until else "unknown"
                return Route(kind=kind, service=found.service, conversation=found.conversation)
            return Route(
                kind="connect",
                service=found.service,
                conversation=found.conversation,
                callee=found,
                caller_id=found.caller_participant_id,  # type: ignore[attr-defined]
            )
        cooling = (
            Participant.objects.filter(
                real_number=caller, proxy_number__number=proxy_number, active=False, cooldown_until__gt=now
            )
            .select_related("service")
            .order_by("-created_at")
            .first()
        )
        if cooling is not None:
            return Route(kind="ended", service=cooling.service, conversation=None)
    owner = VirtualNumber.objects.select_related("service").filter(number=proxy_number).first()
    return Route(kind="unknown", service=owner.service if owner else None)
