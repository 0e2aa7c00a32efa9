"""Shared by the message tests: a conversation of Alice and Bob, and Vonage-shaped inbound SMS."""

from __future__ import annotations

import itertools
from typing import Any

from django.test import Client

from proxy.models import Conversation, Participant
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ParticipantFactory

INBOUND_URL = "/webhooks/sms/inbound"
STATUS_URL = "/webhooks/sms/status"
_ids = itertools.count(1)


def alice_and_bob(service, pool) -> tuple[Conversation, Participant, Participant]:
    """Alice texts +1 201 555 0200 to reach Bob; Bob texts +1 201 555 0202 to reach Alice."""
    conversation = ConversationFactory(service=service, external_id="order-7")
    alice = ParticipantFactory(conversation=conversation, position=0, real_number=ALICE, proxy_number=pool[0])
    bob = ParticipantFactory(conversation=conversation, position=1, real_number=BOB, proxy_number=pool[2])
    return conversation, alice, bob


def inbound_params(
    *,
    sender: str = ALICE,
    to: str = "12015550200",
    text: str | None = "at the gate, blue car",
    message_id: str | None = None,
    **extra: Any,
) -> dict[str, str]:
    params = {
        "msisdn": sender,
        "to": to,
        "messageId": message_id or f"4000000{next(_ids):09d}",
        "type": "text",
        "message-timestamp": "2026-12-03 12:00:00",
        **extra,
    }
    if text is not None:
        params["text"] = text
        params["keyword"] = (text.split() or [""])[0].upper()
    return params


def text_in(client: Client, capture, **kwargs: Any):
    """POST one inbound SMS and run what it queued on commit (the relay, in-process)."""
    params = kwargs.pop("params", None) or inbound_params(**kwargs)
    with capture(execute=True):
        response = client.post(INBOUND_URL, params)
    return response, params
