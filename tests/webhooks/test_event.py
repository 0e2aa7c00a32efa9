from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.models import Call, CallEvent, Recording
from telephony.ncco import ncco_validate
from tests.webhooks.conftest import fixture_names, load_fixture, post_json
from webhooks.payloads import event_from_payload, input_payload_redacted

INBOUND = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
OUTBOUND = "bbbbbbbb-bbbb-cccc-dddd-0123456789ab"


def send(client, payload, method="POST"):
    if method == "GET":
        response = client.get("/webhooks/event", payload)
    else:
        response = post_json(client, "/webhooks/event", payload)
    assert 200 <= response.status_code <= 205
    return response


@pytest.fixture
def answered(client, conversation):
    """The inbound leg once the call was answered and its first event arrived."""
    response = client.get("/webhooks/answer", load_fixture("answer_get.json")["payload"])
    assert response.json()[-1]["action"] == "connect"
    send(client, {**load_fixture("event_started.json"), "timestamp": "2026-11-27T09:59:59.000Z"})
    return Call.objects.get(uuid=INBOUND)


# What each fixture is; every other event fixture is a call status.
KINDS = {
    "event_human.json": "machine",
    "event_machine.json": "machine",
    "event_input_dtmf.json": "input",
    "event_record.json": "record",
    "event_transfer.json": "transfer",
}


@pytest.mark.parametrize("name", fixture_names("event_"))
def test_every_recorded_event_is_kept_once(client, answered, name):
    payload = load_fixture(name)
    send(client, payload)
    send(client, payload)
    # Keys pressed may be a PIN: an input event is kept with them redacted.
    stored = input_payload_redacted(payload) if KINDS.get(name) == "input" else payload
    events = CallEvent.objects.filter(dedup_key=event_from_payload(stored).dedup_key)
    assert events.count() == 1
    assert CallEvent.objects.count() == 2  # with the fixture's own started event
    event = events.get()
    assert event.payload == stored
    assert event.kind == KINDS.get(name, "status")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("event_busy.json", "busy"),
        ("event_unanswered.json", "unanswered"),
        ("event_rejected.json", "rejected"),
        ("event_failed.json", "failed"),
        ("event_timeout.json", "timeout"),
    ],
)
def test_failed_outbound_leg_tells_the_caller(client, answered, conversation, name, status):
    response = send(client, load_fixture(name))
    ncco = response.json()
    ncco_validate(ncco)
    assert ncco == [{"action": "talk", "text": conversation.service.unavailable_text, "language": "en-US"}]
    leg = Call.objects.get(uuid=OUTBOUND)
    assert leg.status == status
    assert leg.direction == "outbound"
    # The outbound leg joins the conversation through the shared conversation_uuid.
    assert leg.conversation == conversation
    assert leg.from_participant == answered.from_participant


def test_ordinary_status_events_get_no_body(client, answered):
    assert send(client, load_fixture("event_ringing.json")).status_code == 204


def test_completed_fills_duration_price_and_times(client, answered):
    for name in ("event_started.json", "event_ringing.json", "event_answered.json", "event_completed.json"):
        send(client, load_fixture(name))
    call = Call.objects.get(uuid=INBOUND)
    assert call.status == "completed"
    assert call.duration == 48
    assert call.price == Decimal("0.01016000")
    assert call.started_at.isoformat().startswith("2026-11-27T10:00:02")
    assert call.ended_at.isoformat().startswith("2026-11-27T10:00:50")
    assert call.answered_at.isoformat().startswith("2026-11-27T10:00:02")


def test_out_of_order_arrival_ends_in_the_same_state(client, answered):
    names = ["event_completed.json", "event_answered.json", "event_ringing.json", "event_started.json"]
    for name in names:
        send(client, load_fixture(name))
    call = Call.objects.get(uuid=INBOUND)
    assert (call.status, call.duration) == ("completed", 48)


def test_later_timestamp_wins_before_a_terminal_status(client, answered):
    send(client, load_fixture("event_answered.json"))  # 10:00:02
    send(client, load_fixture("event_ringing.json"))  # 10:00:01, arrives late
    assert Call.objects.get(uuid=INBOUND).status == "answered"


def test_tie_goes_to_the_further_status(client, answered):
    stamp = "2026-11-27T10:00:05.000Z"
    for status in ("answered", "ringing", "started"):
        send(client, {**load_fixture("event_ringing.json"), "status": status, "timestamp": stamp})
    assert Call.objects.get(uuid=INBOUND).status == "answered"


def test_terminal_status_is_final_but_completed_still_fills_figures(client, answered):
    busy = {**load_fixture("event_busy.json"), "uuid": INBOUND, "direction": "inbound"}
    send(client, busy)
    send(client, load_fixture("event_answered.json"))
    send(client, load_fixture("event_completed.json"))
    call = Call.objects.get(uuid=INBOUND)
    assert call.status == "busy"
    assert call.duration == 48 and call.price == Decimal("0.01016000")


def test_events_without_call_status_change_nothing(client, answered):
    send(client, load_fixture("event_ringing.json"))
    for name in ("event_human.json", "event_machine.json", "event_input_dtmf.json", "event_transfer.json"):
        send(client, {**load_fixture(name), "uuid": INBOUND} if "uuid" in load_fixture(name) else load_fixture(name))
    assert Call.objects.get(uuid=INBOUND).status == "ringing"


def test_unknown_calls_events_are_kept_for_audit(client, db):
    payload = {**load_fixture("event_started.json"), "uuid": "never-seen", "conversation_uuid": "CON-x"}
    send(client, payload)
    call = Call.objects.get(uuid="never-seen")
    assert call.conversation is None and call.status == "started"
    assert CallEvent.objects.filter(call=call).count() == 1


def test_get_events_are_accepted_too(client, answered):
    send(client, load_fixture("event_ringing.json"), method="GET")
    assert Call.objects.get(uuid=INBOUND).status == "ringing"


@pytest.mark.parametrize(
    "body", [b"{broken", b"[]", b"null", b'{"status": {"nested": true}}', b'{"uuid": ["x"], "timestamp": 5}']
)
def test_garbage_events_are_kept_and_acknowledged(client, db, body):
    response = client.post("/webhooks/event", body, content_type="application/json")
    assert response.status_code in (200, 204)
    assert CallEvent.objects.count() == 1


def test_numbers_as_numbers_and_strings_are_both_accepted(client, answered):
    completed = {**load_fixture("event_completed.json"), "duration": 48, "price": 0.01016}
    send(client, completed)
    call = Call.objects.get(uuid=INBOUND)
    assert call.duration == 48 and call.price == Decimal("0.01016")


def test_recording_webhook_keeps_the_recording_once(client, answered, conversation):
    payload = load_fixture("event_record.json")
    for _ in range(2):
        response = post_json(client, "/webhooks/recording", payload)
        assert response.status_code == 204
    recording = Recording.objects.get()
    assert recording.recording_uuid == payload["recording_uuid"]
    assert recording.conversation == conversation
    assert recording.call == answered
    assert CallEvent.objects.filter(kind="record").count() == 1


def test_recording_with_a_non_https_url_is_kept_failed_and_never_fetched(client, answered):
    payload = {**load_fixture("event_record.json"), "recording_url": "http://169.254.169.254/latest"}
    assert post_json(client, "/webhooks/recording", payload).status_code == 204
    recording = Recording.objects.get()
    assert recording.status == Recording.Status.FAILED and "Not a Vonage file URL" in recording.last_error
    assert CallEvent.objects.filter(kind="record").count() == 1


def test_answered_time_is_kept_whatever_the_order(client, answered):
    send(client, load_fixture("event_completed.json"))
    send(client, load_fixture("event_answered.json"))
    call = Call.objects.get(uuid=INBOUND)
    assert call.status == "completed"
    assert call.answered_at.isoformat().startswith("2026-11-27T10:00:02")


def test_legs_without_an_answer_time_row_are_linked_by_their_numbers(client, conversation):
    # The answer-time row was lost: the first events write the legs and find the conversation.
    send(client, load_fixture("event_started.json"))
    send(client, {**load_fixture("event_busy.json"), "conversation_uuid": "CON-other"})
    inbound, outbound = Call.objects.get(uuid=INBOUND), Call.objects.get(uuid=OUTBOUND)
    assert inbound.conversation == outbound.conversation == conversation
    assert inbound.from_participant.real_number == "12015550101"
    assert inbound.to_participant.real_number == "12015550102"
    assert outbound.from_participant == inbound.from_participant
    assert outbound.to_participant == inbound.to_participant


@pytest.mark.parametrize("where", ["uuid", "extra"])
def test_nul_characters_are_stored_not_refused(client, conversation, where):
    payload = {**load_fixture("event_ringing.json")}
    if where == "uuid":
        payload["uuid"] = "nul\u0000uuid"
    else:
        payload["extra"] = "a\u0000b"
    assert send(client, payload).status_code == 204
    assert "\u0000" not in str(CallEvent.objects.get().payload)


def test_lone_surrogates_are_stored_not_refused(client, conversation):
    body = b'{"uuid": "x", "status": "ringing", "note": "\\ud800"}'
    assert client.post("/webhooks/event", body, content_type="application/json").status_code == 204
    assert CallEvent.objects.count() == 1


def test_a_late_call_long_after_the_conversation_ended_is_not_filed_under_it(client, conversation, service):
    from datetime import timedelta

    from django.utils import timezone

    from proxy.services import conversation_close

    conversation_close(conversation=conversation, now=timezone.now() - timedelta(seconds=service.cooldown + 60))
    send(client, load_fixture("event_started.json"))
    assert Call.objects.get(uuid=INBOUND).conversation is None


def test_an_event_that_cannot_be_kept_asks_vonage_to_retry(client, db, monkeypatch):
    from django.db import DatabaseError

    def broken(**kwargs):
        raise DatabaseError("database is down")

    monkeypatch.setattr("webhooks.views.event_receive", broken)
    assert post_json(client, "/webhooks/event", load_fixture("event_ringing.json")).status_code == 503
    # ... but a caller waiting on a failed connect still hears something.
    response = post_json(client, "/webhooks/event", load_fixture("event_busy.json"))
    assert response.status_code == 200
    ncco_validate(response.json())


def test_fallback_always_answers_a_valid_ncco_even_when_the_database_fails(client, db, monkeypatch):
    from django.db import DatabaseError

    def broken(**kwargs):
        raise DatabaseError("database is down")

    monkeypatch.setattr("webhooks.services.event_receive", broken)
    response = post_json(client, "/webhooks/fallback", load_fixture("fallback_event.json"))
    assert response.status_code == 200
    ncco_validate(response.json())
