"""The NCCO builder, without a database: what each route makes the caller hear."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from proxy.models import Conversation, Participant, Service
from proxy.ncco import (
    GENERIC_NOTICE_TEXT,
    GENERIC_UNAVAILABLE_TEXT,
    GENERIC_UNKNOWN_TEXT,
    ncco_for_route,
    record_notice_ncco,
    unavailable_ncco,
)
from proxy.selectors import Route
from telephony.ncco import ncco_validate

PUBLIC_URL = "https://calls.example.com"


def _service(**fields) -> Service:
    values = {"name": "Acme", "slug": "acme", "language": "en-GB", "voice_style": 2, **fields}
    return Service(**values)


def _route(service: Service, *, record: bool = False) -> Route:
    conversation = Conversation(record=record)
    callee = Participant(real_number="12015550102", proxy_number_id="12015550201")
    return Route(kind="connect", service=service, conversation=conversation, callee=callee)


def test_a_known_caller_is_connected_to_the_callee_with_their_proxy_number_as_caller_id():
    ncco = ncco_for_route(_route(_service(connect_timeout=30, call_time_limit=600)), public_url=PUBLIC_URL)
    ncco_validate(ncco)
    (connect,) = ncco
    assert connect["action"] == "connect"
    assert connect["endpoint"] == [{"type": "phone", "number": "12015550102"}]
    assert connect["from"] == "12015550201"
    assert (connect["timeout"], connect["limit"]) == (30, 600)
    assert connect["eventType"] == "synchronous"
    assert connect["eventUrl"] == [f"{PUBLIC_URL}/webhooks/event"]


def test_greeting_then_notice_and_record_before_the_connect():
    service = _service(greeting_text="Hello from Acme.", record_notice="This call is recorded.")
    ncco = ncco_for_route(_route(service, record=True), public_url=PUBLIC_URL)
    ncco_validate(ncco)
    assert [action["action"] for action in ncco] == ["talk", "talk", "record", "connect"]
    assert [ncco[0]["text"], ncco[1]["text"]] == ["Hello from Acme.", "This call is recorded."]
    assert ncco[0]["language"] == "en-GB" and ncco[0]["style"] == 2
    assert ncco[2]["eventUrl"] == [f"{PUBLIC_URL}/webhooks/recording"]


def test_both_sides_hear_the_notice_before_anything_of_theirs_is_recorded():
    """The consent guarantee, in the NCCOs Vonage gets (see proxy.ncco's docstring).

    Caller: the notice is a synchronous talk (no bargeIn) that comes before the record,
    so the recording starts once the caller has heard all of it. Callee: the connect's
    phone endpoint runs onAnswer before the callee's leg joins the recorded conversation,
    and the onAnswer NCCO is the notice alone.
    """
    service = _service(pk=7, record_notice="Calls are recorded for quality.", record_notice_language="fr-FR")
    ncco = ncco_for_route(_route(service, record=True), public_url=PUBLIC_URL)
    ncco_validate(ncco)
    kinds = [action["action"] for action in ncco]
    notice, record, connect = ncco[kinds.index("talk")], ncco[kinds.index("record")], ncco[kinds.index("connect")]
    assert kinds.index("talk") < kinds.index("record") < kinds.index("connect")
    assert notice["text"] == "Calls are recorded for quality." and notice["bargeIn"] is False
    assert notice["language"] == "fr-FR"
    # No end condition: the record runs on while the connect bridges the callee in.
    assert not {"endOnSilence", "endOnKey", "timeOut"} & set(record)
    (endpoint,) = connect["endpoint"]
    assert endpoint["onAnswer"] == {"url": f"{PUBLIC_URL}/webhooks/record-notice?service=7"}

    callee_hears = record_notice_ncco(service)
    ncco_validate(callee_hears)
    assert callee_hears == [notice]


def test_the_notice_has_its_own_language_and_voice_or_the_services():
    own = record_notice_ncco(
        _service(record_notice="Recorded.", record_notice_language="de-DE", record_notice_voice_style=5)
    )
    assert own == [{"action": "talk", "text": "Recorded.", "bargeIn": False, "language": "de-DE", "style": 5}]
    inherited = record_notice_ncco(_service(record_notice="Recorded."))
    assert inherited == [{"action": "talk", "text": "Recorded.", "bargeIn": False, "language": "en-GB", "style": 2}]
    generic = record_notice_ncco(None)
    assert generic == [{"action": "talk", "text": GENERIC_NOTICE_TEXT, "bargeIn": False, "language": "en-US"}]


def test_a_conversation_that_does_not_record_gets_no_notice_no_record_and_no_on_answer():
    ncco = ncco_for_route(_route(_service(transcribe=True), record=False), public_url=PUBLIC_URL)
    assert [action["action"] for action in ncco] == ["connect"]
    assert ncco[0]["endpoint"] == [{"type": "phone", "number": "12015550102"}]


def test_a_transcribing_service_asks_for_a_transcription_with_its_event_url():
    ncco = ncco_for_route(_route(_service(transcribe=True), record=True), public_url=PUBLIC_URL)
    ncco_validate(ncco)
    (record,) = [action for action in ncco if action["action"] == "record"]
    assert record["transcription"] == {"language": "en-GB", "eventUrl": [f"{PUBLIC_URL}/webhooks/transcription"]}
    assert (record["format"], record["split"], record["channels"]) == ("mp3", "conversation", 2)
    untranscribed = ncco_for_route(_route(_service(transcribe=False), record=True), public_url=PUBLIC_URL)
    assert all("transcription" not in action for action in untranscribed)


def test_the_call_limit_never_exceeds_what_vonage_allows():
    ncco = ncco_for_route(_route(_service(call_time_limit=36_000)), public_url=PUBLIC_URL)
    assert ncco[-1]["limit"] == 7200


def test_ended_and_unknown_callers_hear_the_service_text_and_are_not_connected():
    service = _service(ended_text="It is over.", unknown_caller_text="Who are you?")
    ended = ncco_for_route(Route(kind="ended", service=service), public_url=PUBLIC_URL)
    unknown = ncco_for_route(Route(kind="unknown", service=service), public_url=PUBLIC_URL)
    assert ended == [{"action": "talk", "text": "It is over.", "language": "en-GB", "style": 2}]
    assert unknown == [{"action": "talk", "text": "Who are you?", "language": "en-GB", "style": 2}]


def test_a_number_of_no_service_hears_the_generic_text():
    ncco = ncco_for_route(Route(kind="unknown"), public_url=PUBLIC_URL)
    assert ncco == [{"action": "talk", "text": GENERIC_UNKNOWN_TEXT, "language": "en-US"}]
    assert unavailable_ncco(None) == [{"action": "talk", "text": GENERIC_UNAVAILABLE_TEXT, "language": "en-US"}]


# --- The plain connect NCCO (issue 17): the models' dump, without the models ----------------------


def _both(service: Service, conversation: Conversation, callee: Participant) -> tuple[list, list]:
    from proxy import ncco

    kwargs = {"service": service, "conversation": conversation, "callee": callee, "public_url": PUBLIC_URL}
    return ncco.connect_ncco(**kwargs), ncco._modelled_connect_ncco(**kwargs)


@pytest.mark.parametrize("greeting", ["", "Connecting you now.", "x" * 1500])
@pytest.mark.parametrize(("language", "style"), [("en-GB", 2), ("de-DE", 0), ("", 0), ("fr-FR", 11)])
@pytest.mark.parametrize(
    ("ring_timeout", "call_time_limit", "connect_timeout", "service_limit"),
    [(None, None, 45, 7200), (20, 600, 45, 7200), (None, 60, 120, 36_000), (60, None, 30, 36_000)],
)
def test_an_unrecorded_connect_is_exactly_what_the_models_give(
    greeting, language, style, ring_timeout, call_time_limit, connect_timeout, service_limit
):
    service = _service(
        greeting_text=greeting,
        language=language,
        voice_style=style,
        connect_timeout=connect_timeout,
        call_time_limit=service_limit,
    )
    conversation = Conversation(record=False, ring_timeout=ring_timeout, call_time_limit=call_time_limit)
    callee = Participant(real_number="447700900123", proxy_number_id="12015550201")
    plain, modelled = _both(service, conversation, callee)
    assert plain == modelled
    # The same keys in the same order, so the JSON Vonage gets is byte for byte the same.
    assert json.dumps(plain) == json.dumps(modelled)
    ncco_validate(plain)


@pytest.mark.parametrize(
    ("number", "caller_id"),
    [("0201555010", "12015550201"), ("12015550102", "+12015550201"), ("123456", "12015550201"), ("", "12015550201")],
)
def test_a_number_the_models_refuse_is_refused_as_before(number, caller_id):
    """The plain NCCO takes only what the models take: anything else goes through the
    models, which raise (the answer webhook then says the generic message)."""
    callee = Participant(real_number=number, proxy_number_id=caller_id)
    with pytest.raises(ValidationError):
        ncco_for_route(
            Route(kind="connect", service=_service(), conversation=Conversation(record=False), callee=callee),
            public_url=PUBLIC_URL,
        )


def test_a_greeting_longer_than_vonage_takes_is_refused_as_before():
    route = _route(_service(greeting_text="x" * 1501))
    with pytest.raises(ValidationError):
        ncco_for_route(route, public_url=PUBLIC_URL)


def test_a_recorded_conversation_still_goes_through_the_models(monkeypatch):
    from proxy import ncco

    def plain(*args, **kwargs):
        pytest.fail("a recorded conversation got the plain NCCO")

    monkeypatch.setattr(ncco, "_plain_connect_ncco", plain)
    steps = ncco_for_route(_route(_service(), record=True), public_url=PUBLIC_URL)
    assert [step["action"] for step in steps] == ["talk", "record", "connect"]


def test_digits_of_another_script_go_through_the_models():
    """Only ASCII digits take the plain path: whatever the models make of others is theirs."""
    from proxy import ncco

    callee = Participant(real_number="١٢٠١٥٥٥٠١٠٢", proxy_number_id="12015550201")
    plain = ncco._plain_connect_ncco(
        service=_service(), conversation=Conversation(record=False), callee=callee, public_url=PUBLIC_URL
    )
    assert plain is None
