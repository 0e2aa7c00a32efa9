"""What staff see of a played call: people's numbers masked, everything else as it was."""

from __future__ import annotations

import pytest

from harness.masking import own_numbers, payload_mask, text_mask
from proxy.phone import mask
from tests.conftest import ALICE, BOB, UK_PERSON

pytestmark = pytest.mark.django_db

PROXY = "12015550200"


@pytest.mark.parametrize(
    "text",
    [
        "leg 6f1c2d3e-0000-4000-8000-446655440000",
        "12345678-abcd-4000-8000-000000000000",
        "price 0.01270000 at 2026-11-27T11:31:55.000Z",
        "network 12345, size 12222, HTTP 200",
        "recording https://api.nexmo.com/v1/files/9d0f3c52-1a2b-4c3d-8e9f-123456789012",
    ],
)
def test_text_without_phone_numbers_is_untouched(text):
    assert text_mask(text) == text


def test_numbers_in_text_are_masked_unless_kept():
    line = f"Call from {ALICE} to {PROXY}, ringing +{UK_PERSON} and sip:{BOB}@pbx.example"
    shown = text_mask(line, keep={PROXY})
    for person in (ALICE, BOB, UK_PERSON):
        assert person not in shown
        assert mask(person) in shown
    assert PROXY in shown


def test_payloads_are_masked_at_every_depth_without_being_changed():
    ncco = [
        {"action": "talk", "text": f"Connecting you to {BOB}"},
        {"action": "connect", "from": PROXY, "endpoint": [{"type": "phone", "number": BOB}], "timeout": 45},
    ]
    event = {"from": f"+{ALICE}", "to": 12015550102, "status": "answered", "duration": "61", "price": "0.0254"}
    shown_ncco = payload_mask(ncco, keep={PROXY})
    shown_event = payload_mask(event, keep={PROXY})
    assert shown_ncco[1]["endpoint"][0]["number"] == mask(BOB)
    assert shown_ncco[1]["from"] == PROXY
    assert shown_ncco[0]["text"] == f"Connecting you to {mask(BOB)}"
    assert shown_ncco[1]["timeout"] == 45
    assert shown_event == {
        "from": mask(ALICE),
        "to": mask(BOB),
        "status": "answered",
        "duration": "61",
        "price": "0.0254",
    }
    assert ncco[1]["endpoint"][0]["number"] == BOB  # the original is left alone


def test_withheld_and_odd_numbers_are_shown_as_they_are():
    assert payload_mask({"from": "Unknown", "to": "", "number": True}) == {"from": "Unknown", "to": "", "number": True}


def test_own_numbers_are_the_pools_numbers_only(pool):
    assert own_numbers(candidates=[PROXY, ALICE, ""]) == {PROXY}
    assert own_numbers(candidates=[]) == frozenset()
