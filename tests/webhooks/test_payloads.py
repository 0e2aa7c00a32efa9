"""What a voice webhook keeps of its request: everything, made storable (issue 17 kept the
usual ASCII request as it is, without a call per string)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import TooManyFieldsSent
from django.test import RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from proxy.parsers import json_strings
from webhooks.payloads import query_fields, request_payload

rf = RequestFactory()


def _assert_storable(payload: dict) -> None:
    """No NUL and no lone surrogate in any name or value, nested ones included (what
    PostgreSQL refuses in text and jsonb)."""
    for text in json_strings(payload):
        assert "\x00" not in text
        text.encode("utf-8")  # raises on a lone surrogate


def test_the_usual_answer_request_is_kept_as_sent():
    request = rf.get("/webhooks/answer?from=12015550101&to=12015550200&uuid=abc-1&conversation_uuid=CON-1")
    assert request_payload(request) == {
        "from": "12015550101",
        "to": "12015550200",
        "uuid": "abc-1",
        "conversation_uuid": "CON-1",
    }


@pytest.mark.parametrize(
    ("query", "field", "kept"),
    [
        ("from=1201%00555", "from", "1201\ufffd555"),  # a NUL from the query string
        ("na%00me=x", "na\ufffdme", "x"),  # in a name too
        ("from=M%C3%BCller", "from", "Müller"),  # non-ASCII text stays what it is
        ("from=%ED%A0%80", "from", "\ufffd\ufffd\ufffd"),  # an encoded surrogate: not UTF-8
    ],
)
def test_a_query_with_what_a_database_refuses_is_made_storable(query, field, kept):
    payload = request_payload(rf.get(f"/webhooks/answer?{query}"))
    assert payload[field] == kept
    _assert_storable(payload)


@pytest.mark.parametrize(
    ("body", "field", "kept"),
    [
        (b'{"uuid": "a\\u0000b", "duration": 12}', "uuid", "a\ufffdb"),
        (b'{"uuid": "ab", "note": "a\\u0000b"}', "note", "a\ufffdb"),
        (b'{"uuid": "ab", "note": "\\ud800"}', "note", "?"),  # a lone surrogate: not UTF-8
        (b'{"uuid": "ab", "tags": ["x\\u0000"]}', "tags", ["x\ufffd"]),
    ],
)
def test_a_json_body_with_what_a_database_refuses_is_made_storable(body, field, kept):
    payload = request_payload(rf.post("/webhooks/event", body, content_type="application/json"))
    assert payload[field] == kept
    _assert_storable(payload)


def test_a_json_body_of_plain_values_keeps_its_types():
    body = {"uuid": "abc", "duration": "12", "rate": 0.5, "answered": True, "extra": None, "list": [1, "a"]}
    assert request_payload(rf.post("/webhooks/event", json.dumps(body), content_type="application/json")) == body


# Query strings of the characters that matter to a parser: with and without "%" and "+",
# which send the read through parse_qsl rather than its shortcut.
_QUERY = st.text(alphabet="ab=&%+2F0;é\x00 ", max_size=40)


@given(query=_QUERY)
def test_a_query_string_is_read_exactly_as_django_reads_it(query):
    request = rf.get("/webhooks/answer")
    request.environ["QUERY_STRING"] = query.encode("utf-8").decode("iso-8859-1")
    expected = rf.get("/webhooks/answer")
    expected.environ["QUERY_STRING"] = request.environ["QUERY_STRING"]
    assert query_fields(request) == {k: v for k, v in expected.GET.items()}


@pytest.mark.parametrize("value", ["1", "%31"], ids=["plain", "encoded"])
def test_too_many_query_fields_are_refused_either_way(value, settings):
    query = "&".join(f"f{i}={value}" for i in range(1001))
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
    with pytest.raises(TooManyFieldsSent):
        query_fields(rf.get(f"/webhooks/answer?{query}"))
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 1001
    assert len(query_fields(rf.get(f"/webhooks/answer?{query}"))) == 1001
