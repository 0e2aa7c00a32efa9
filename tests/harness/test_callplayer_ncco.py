"""The player's NCCO interpreter, against a scripted server (no database, no HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jwt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from harness.callplayer import Answer, CallPlayer

SECRET = "scripted-server-signature-secret-32b"


class ScriptedServer:
    """Answers the answer webhook with ``ncco`` and each POST with ``replies[path]`` (default 204)."""

    def __init__(self, ncco, replies=None):
        self.ncco = ncco
        self.replies = replies or {}
        self.sent = []
        self.queries = []

    def send(self, method, path, *, query="", body=b"", headers):
        self.sent.append((method, path, json.loads(body) if body else None, headers))
        self.queries.append(query)
        if path == "/webhooks/answer":
            return Answer(200, json.dumps(self.ncco).encode())
        status, reply = self.replies.get(path, (204, None))
        return Answer(status, json.dumps(reply).encode() if reply is not None else b"")

    def statuses(self):
        return [payload.get("status") for _m, _p, payload, _h in self.sent if payload]


def play(server, **kwargs):
    player = CallPlayer(server, secret=SECRET, clock=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    return player.play(caller="12015550101", proxy_number="12015550200", **kwargs)


CONNECT = {
    "action": "connect",
    "from": "12015550201",
    "eventType": "synchronous",
    "endpoint": [{"type": "phone", "number": "12015550102"}],
    "eventUrl": ["http://server.example/webhooks/event"],
}


def test_invalid_ncco_stops_the_call_with_exit_code_3():
    result = play(ScriptedServer([{"action": "talk"}]))
    assert result.exit_code == 3
    assert "invalid NCCO" in result.error


def test_an_answer_that_is_not_an_ncco_is_invalid():
    assert play(ScriptedServer({"hello": "world"})).exit_code == 3


def test_every_request_is_signed_with_the_body_hash():
    server = ScriptedServer([{"action": "talk", "text": "Hi"}])
    play(server)
    for _method, _path, payload, headers in server.sent:
        claims = jwt.decode(headers["Authorization"].removeprefix("Bearer "), SECRET, algorithms=["HS256"])
        assert claims["iss"] == "Vonage"
        assert ("payload_hash" in claims) is (payload is not None)


def test_completed_event_carries_duration_and_price_as_strings():
    server = ScriptedServer([CONNECT])
    result = play(server, duration=61)
    completed = [p for _m, _p, p, _h in server.sent if p and p.get("status") == "completed"]
    assert [c["duration"] for c in completed] == ["61", str(61 + 4 + 0)]
    assert completed[0]["price"] == "0.02540000"  # two started minutes at 0.0127
    assert completed[0]["start_time"].endswith("Z")
    assert result.connected.to_number == "12015550102"


def test_unanswered_synchronous_connect_follows_the_returned_ncco():
    sorry = [{"action": "talk", "text": "Nobody answered"}]
    server = ScriptedServer([CONNECT, {"action": "talk", "text": "never said"}], {"/webhooks/event": (200, sorry)})
    result = play(server, outcome="unanswered")
    assert result.ok
    assert any("Nobody answered" in line for line in result.transcript)
    assert not any("never said" in line for line in result.transcript)
    unanswered = [p for _m, _p, p, _h in server.sent if p and p.get("status") == "unanswered"]
    assert unanswered[0]["detail"] == "timeout"


def test_record_input_notify_and_stream_are_played():
    ncco = [
        {"action": "record", "eventUrl": ["https://server.example/webhooks/recording"]},
        {"action": "stream", "streamUrl": ["https://example.com/a.mp3"]},
        {"action": "notify", "payload": {"step": 1}, "eventUrl": ["https://server.example/hooks/notify"]},
        {"action": "input", "type": ["dtmf"], "eventUrl": ["https://server.example/hooks/input"]},
    ]
    after_input = [{"action": "talk", "text": "Thanks"}]
    server = ScriptedServer(ncco, {"/hooks/input": (200, after_input)})
    result = play(server)
    assert result.ok, result.transcript
    paths = [path for _m, path, _p, _h in server.sent]
    assert paths.index("/hooks/notify") < paths.index("/hooks/input")
    assert paths[-1] == "/webhooks/recording"  # the record event comes after the call ended
    record = server.sent[-1][2]
    assert record["recording_url"].startswith("https://api.nexmo.com/v1/files/")
    assert server.sent[paths.index("/hooks/notify")][2] == {"step": 1}
    assert any("Thanks" in line for line in result.transcript)


def test_the_caller_keys_in_the_pins_given_one_per_prompt_and_then_nothing():
    ask = [{"action": "input", "type": ["dtmf"], "eventUrl": ["https://server.example/webhooks/input?prompt=t1"]}]
    again = [{"action": "input", "type": ["dtmf"], "eventUrl": ["https://server.example/webhooks/input?prompt=t2"]}]
    server = ScriptedServer(ask, {"/webhooks/input": (200, again)})
    result = play(server, pins=["000000", "123456"])
    assert result.exit_code == 3  # the scripted server asks for ever: cut short
    inputs = [
        (p["dtmf"], q)
        for (_m, path, p, _h), q in zip(server.sent, server.queries, strict=True)
        if path == "/webhooks/input"
    ]
    assert inputs[0] == ({"digits": "000000", "timed_out": False}, "prompt=t1")  # the query is followed too
    assert inputs[1] == ({"digits": "123456", "timed_out": False}, "prompt=t2")
    assert inputs[2][0] == {"digits": "", "timed_out": True}
    # The transcript says keys were pressed, never which: they may be a PIN.
    assert not any("123456" in line or "000000" in line for line in result.transcript)
    assert any("presses 6 keys" in line for line in result.transcript)


def test_a_rejected_event_makes_the_play_fail_with_exit_code_1():
    server = ScriptedServer([CONNECT], {"/webhooks/event": (401, {"detail": "bad signature"})})
    result = play(server)
    assert result.exit_code == 1
    assert result.rejected


def test_an_ncco_loop_is_cut_short():
    loop = [{"action": "input", "type": ["dtmf"], "eventUrl": ["https://s.example/again"]}]
    result = play(ScriptedServer(loop, {"/again": (200, loop)}))
    assert result.exit_code == 3


def test_simulate_call_rejects_invalid_numbers():
    with pytest.raises(CommandError):
        call_command("simulate_call", "--from", "123", "--to", "12015550200", "--url", "http://127.0.0.1:9")


@pytest.mark.parametrize("keys", ["", "12a456", "1" * 21])
def test_simulate_call_rejects_keys_no_keypad_has(keys):
    with pytest.raises(CommandError, match="--pin"):
        call_command(
            "simulate_call",
            "--from",
            "12015550101",
            "--to",
            "12015550200",
            "--pin",
            keys,
            "--url",
            "http://127.0.0.1:9",
        )


@pytest.mark.django_db
def test_simulate_call_records_legs_only_where_the_sandbox_tables_exist(monkeypatch):
    from django.db import DatabaseError, connection

    from harness.management.commands.simulate_call import _sandbox_tables_exist

    assert _sandbox_tables_exist() is True
    real = connection.introspection.table_names
    monkeypatch.setattr(
        connection.introspection, "table_names", lambda: [t for t in real() if not t.startswith("telephony_")]
    )
    assert _sandbox_tables_exist() is False

    def unreachable():
        raise DatabaseError("could not connect")

    monkeypatch.setattr(connection.introspection, "table_names", unreachable)
    assert _sandbox_tables_exist() is False


def test_the_callee_hears_the_on_answer_ncco_before_being_bridged_and_a_failure_fails_the_play():
    notice = [{"action": "talk", "text": "This call is recorded."}]
    with_notice = {**CONNECT, "endpoint": [{**CONNECT["endpoint"][0], "onAnswer": {"url": "https://x/webhooks/n?s=1"}}]}
    server = ScriptedServer([with_notice], replies={"/webhooks/n": (200, notice)})
    result = play(server)
    assert result.ok, result.transcript
    heard = result.transcript.index('  12015550102 hears, before being connected: "This call is recorded."')
    assert heard < next(i for i, line in enumerate(result.transcript) if "answers; they talk" in line)
    method, _path, _, headers = next(sent for sent in server.sent if sent[1] == "/webhooks/n")
    assert method == "GET" and headers["Authorization"].startswith("Bearer ")

    refused = play(ScriptedServer([with_notice], replies={"/webhooks/n": (401, {"detail": "no"})}))
    assert refused.exit_code == 1
    invalid = play(ScriptedServer([with_notice], replies={"/webhooks/n": (200, [{"action": "dance"}])}))
    assert invalid.exit_code == 3
