from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.models import Call, Service
from proxy.ncco import GENERIC_UNKNOWN_TEXT
from proxy.services import conversation_close
from telephony.ncco import ncco_validate
from tests.conftest import ALICE, BOB, CAROL
from tests.webhooks.conftest import answered, load_fixture, post_json


def _answer(client, payload, method="GET"):
    return answered(client, payload, method=method).json()


@pytest.mark.parametrize("name", ["answer_get.json", "answer_post.json"])
def test_known_caller_is_connected_to_the_other_party_with_their_proxy_number(client, conversation, name):
    recorded = load_fixture(name)
    ncco = _answer(client, recorded["payload"], recorded["method"])
    connect = ncco[-1]
    assert connect["action"] == "connect"
    assert connect["endpoint"] == [{"type": "phone", "number": BOB}]
    # Bob sees the number Bob dials to reach Alice, never Alice's real number.
    assert connect["from"] == "12015550202"
    assert connect["eventType"] == "synchronous"
    assert connect["eventUrl"] == ["http://127.0.0.1:8000/webhooks/event"]
    # Nothing is written while the caller waits; the first event writes and links the call.
    assert not Call.objects.exists()
    started = {**recorded["payload"], "status": "started", "direction": "inbound", "from": ALICE}
    post_json(client, "/webhooks/event", started)
    call = Call.objects.get(uuid=recorded["payload"]["uuid"])
    assert call.conversation == conversation
    assert call.from_participant.real_number == ALICE
    assert call.to_participant.real_number == BOB
    assert call.direction == "inbound"


def test_the_other_direction(client, conversation):
    ncco = _answer(client, {"from": BOB, "to": "12015550202", "uuid": "u-bob"})
    assert ncco[-1]["endpoint"][0]["number"] == ALICE
    assert ncco[-1]["from"] == "12015550200"


def test_greeting_and_recording_come_before_connect(client, conversation, service):
    service.greeting_text = "Connecting you to your driver."
    service.save()
    conversation.record = True
    conversation.save()
    ncco = _answer(client, {"from": ALICE, "to": "12015550200", "uuid": "u-rec"})
    assert [a["action"] for a in ncco] == ["talk", "talk", "record", "connect"]
    assert ncco[0]["text"] == "Connecting you to your driver."
    assert ncco[2]["eventUrl"] == ["http://127.0.0.1:8000/webhooks/recording"]


def _assert_message_only(ncco, text):
    assert [a["action"] for a in ncco] == ["talk"]
    assert ncco[0]["text"] == text
    assert ALICE not in str(ncco) and BOB not in str(ncco)


@pytest.mark.parametrize(
    "payload",
    [
        {"from": CAROL, "to": "12015550200"},  # a stranger
        {"from": ALICE, "to": "12015550202"},  # Alice on Bob's number
        {"from": "Unknown", "to": "12015550200"},  # withheld caller ID
        {"from": "", "to": "12015550200"},
        {"to": "12015550200", "from_user": "alice"},  # Client SDK caller
        {"from": "sip:alice@example.com", "to": "12015550200"},
        {"from": "x" * 5000, "to": "12015550200"},
    ],
)
def test_unknown_callers_hear_the_services_message_and_are_not_connected(client, conversation, service, payload):
    # The dialled number is the service's, so its own unknown-caller text is spoken.
    _assert_message_only(_answer(client, payload), service.unknown_caller_text)


@pytest.mark.parametrize("dialled", ["19999999999", "12015550200' OR 1=1 --", ""])
def test_unknown_or_garbage_dialled_number_gets_the_generic_message(client, conversation, dialled):
    _assert_message_only(_answer(client, {"from": ALICE, "to": dialled}), GENERIC_UNKNOWN_TEXT)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2, 3]", b'"just a string"', b"\xff\xfe", b"[" * 10000 + b"]" * 10000, b"{}"],
)
def test_garbage_posts_get_a_message_never_an_error(client, conversation, body):
    response = client.post("/webhooks/answer", body, content_type="application/json")
    assert response.status_code == 200
    ncco = response.json()
    ncco_validate(ncco)
    assert [a["action"] for a in ncco] == ["talk"]


def test_closed_conversation_says_it_has_ended(client, conversation, service):
    conversation_close(conversation=conversation)
    _assert_message_only(_answer(client, {"from": ALICE, "to": "12015550200"}), service.ended_text)


def test_expired_conversation_routes_as_ended_before_any_sweep(client, conversation, service):
    conversation.expires_at = timezone.now() - timedelta(seconds=1)
    conversation.save()
    _assert_message_only(_answer(client, {"from": ALICE, "to": "12015550200"}), service.ended_text)
    assert conversation.participants.filter(active=True).count() == 2  # nothing written on the hot path


def test_after_the_cooldown_a_late_caller_is_unknown(client, conversation, service):
    conversation_close(conversation=conversation, now=timezone.now() - timedelta(seconds=service.cooldown + 1))
    _assert_message_only(_answer(client, {"from": ALICE, "to": "12015550200"}), service.unknown_caller_text)


def test_cooldown_zero_means_no_ended_message(client, conversation, service):
    Service.objects.filter(pk=service.pk).update(cooldown=0)
    conversation_close(conversation=conversation)
    _assert_message_only(_answer(client, {"from": ALICE, "to": "12015550200"}), service.unknown_caller_text)


def test_service_language_and_style_are_used(client, conversation, service):
    service.language, service.voice_style = "de-DE", 2
    service.save()
    ncco = _answer(client, {"from": CAROL, "to": "12015550200"})
    assert ncco[0]["language"] == "de-DE" and ncco[0]["style"] == 2


def test_the_answer_path_is_one_read(client, conversation, django_assert_num_queries):
    for _ in range(2):  # Vonage may retry an answer: still nothing written
        with django_assert_num_queries(1):
            _answer(client, {"from": ALICE, "to": "12015550200", "uuid": "u-lean", "conversation_uuid": "C1"})
    assert not Call.objects.exists()


@pytest.mark.postgres
def test_the_answer_read_is_a_prepared_statement_on_postgresql(client, conversation):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    for _ in range(6):  # psycopg prepares a statement on its sixth run on a connection
        _answer(client, {"from": ALICE, "to": "12015550200"})

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert [s for s in prepared if "FROM proxy_participant AS caller" in s]


def test_database_failure_still_answers_with_a_message(client, conversation, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr("webhooks.services.route_for_call", broken)
    ncco = _answer(client, {"from": ALICE, "to": "12015550200"})
    assert [a["action"] for a in ncco] == ["talk"]


def test_fallback_routes_an_answer_exactly_like_answer(client, conversation):
    response = post_json(client, "/webhooks/fallback", load_fixture("fallback_answer.json"))
    assert response.status_code == 200
    ncco = response.json()
    ncco_validate(ncco)
    assert ncco[-1]["action"] == "connect" and ncco[-1]["endpoint"][0]["number"] == BOB


def test_fallback_for_an_event_keeps_it_and_answers_a_safe_ncco(client, conversation):
    _answer(client, load_fixture("answer_get.json")["payload"])
    response = post_json(client, "/webhooks/fallback", load_fixture("fallback_event.json"))
    assert response.status_code == 200
    ncco = response.json()
    ncco_validate(ncco)
    assert [a["action"] for a in ncco] == ["talk"]
    assert Call.objects.get(uuid=load_fixture("fallback_event.json")["uuid"]).status == "busy"


def test_fallback_with_garbage_still_answers(client, db):
    response = client.post("/webhooks/fallback", b"nonsense", content_type="application/json")
    assert response.status_code == 200
    ncco_validate(response.json())


def test_other_methods_are_refused(client, db):
    assert client.put("/webhooks/answer").status_code == 405
