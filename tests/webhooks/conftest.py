from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.models import Conversation
from telephony.ncco import ncco_validate
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ParticipantFactory

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def fixture_names(prefix: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(f"{prefix}*.json"))


@pytest.fixture
def conversation(service, pool) -> Conversation:
    """Alice dials +1 201 555 0200 to reach Bob; Bob dials +1 201 555 0202 to reach Alice."""
    conv = ConversationFactory(service=service)
    ParticipantFactory(conversation=conv, position=0, real_number=ALICE, proxy_number=pool[0], name="Alice")
    ParticipantFactory(conversation=conv, position=1, real_number=BOB, proxy_number=pool[2], name="Bob")
    return conv


def post_json(client, url: str, payload: Any, **headers: str):
    return client.post(url, json.dumps(payload), content_type="application/json", **headers)


def answered(client, payload: dict[str, Any], *, method: str = "GET"):
    """The answer webhook's response to ``payload``: a 200 whose NCCO the SDK's models accept."""
    if method == "GET":
        response = client.get("/webhooks/answer", payload)
    else:
        response = post_json(client, "/webhooks/answer", payload)
    assert response.status_code == 200
    ncco_validate(response.json())
    return response


def actions(ncco: list[dict[str, Any]]) -> list[str]:
    return [action["action"] for action in ncco]
