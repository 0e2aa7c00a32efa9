"""Reading an out-of-session hook's reply: pure code, no database."""

from __future__ import annotations

import pytest

from proxy.hook_replies import (
    ConnectReply,
    InvalidReply,
    OpenReply,
    TalkReply,
    out_of_session_reply_parse,
    reply_json,
)


def test_the_three_actions():
    assert out_of_session_reply_parse({"action": "talk", "text": "Hi"}) == TalkReply("Hi")
    assert out_of_session_reply_parse({"action": "connect", "number": "+12015550104"}) == ConnectReply("+12015550104")
    assert out_of_session_reply_parse({"action": "connect", "number": 12015550104}) == ConnectReply("12015550104")
    opened = out_of_session_reply_parse(
        {
            "action": "open",
            "participant": {"number": "+12015550104", "name": "Dave"},
            "ttl": 60,
            "external_id": "x",
            "metadata": {"a": 1},
        }
    )
    assert opened == OpenReply({"number": "+12015550104", "name": "Dave"}, 60, "x", {"a": 1})
    assert out_of_session_reply_parse({"action": "open", "participant": {"number": "1"}}) == OpenReply({"number": "1"})


@pytest.mark.parametrize(
    "value",
    [
        [],
        "talk",
        {},
        {"action": "TALK", "text": "x"},
        {"action": "talk", "text": ""},
        {"action": "talk", "text": 5},
        {"action": "talk", "text": "x" * 1001},
        {"action": "talk", "text": "a\x00b"},
        {"action": "connect"},
        {"action": "connect", "number": True},
        {"action": "connect", "number": "1" * 65},
        {"action": "open"},
        {"action": "open", "participant": "12015550104"},
        {"action": "open", "participant": {"number": "12015550104"}, "ttl": 0},
        {"action": "open", "participant": {"number": "12015550104"}, "ttl": "60"},
        {"action": "open", "participant": {"number": "12015550104"}, "ttl": True},
        {"action": "open", "participant": {"number": "12015550104"}, "external_id": "x" * 201},
        {"action": "open", "participant": {"number": "12015550104"}, "metadata": [1]},
        {"action": "open", "participant": {"number": "12015550104"}, "metadata": {"x": "y" * 9000}},
    ],
)
def test_anything_else_is_an_invalid_reply(value):
    with pytest.raises(InvalidReply):
        out_of_session_reply_parse(value)


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"<html></html>", b"\xff\xfe", b"{", b'{"a": NaN}', b"[" * 100 + b"]" * 100]
)
def test_bodies_that_are_not_json(body):
    with pytest.raises(InvalidReply):
        reply_json(body)


def test_the_reason_never_echoes_the_reply():
    with pytest.raises(InvalidReply) as caught:
        out_of_session_reply_parse(
            {"action": "connect", "number": "4412345678901234567890123456789012345678901234567890123456789012345"}
        )
    assert "44123" not in str(caught.value)
