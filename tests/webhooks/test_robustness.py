"""Hostile bodies on every webhook: a 4xx or a 2xx, never a 500."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st

from proxy.models import CallEvent

DEEP_LIST = b"[" * 20000 + b"]" * 20000
DEEP_OBJECT = b'{"x":' * 5000 + b"1" + b"}" * 5000


@pytest.mark.parametrize("url", ["/webhooks/sms/status", "/webhooks/sms/inbound"])
@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT, b"{broken", b"\xff"])
def test_sms_webhooks_refuse_absurd_json_with_400(client, db, url, body):
    assert client.post(url, body, content_type="application/json").status_code == 400


@pytest.mark.parametrize("url", ["/webhooks/answer", "/webhooks/event", "/webhooks/fallback", "/webhooks/recording"])
@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT])
def test_voice_webhooks_keep_answering(client, db, url, body):
    assert client.post(url, body, content_type="application/json").status_code in (200, 204)


def test_sms_inbound_with_a_nul_character_is_kept(client, db):
    response = client.get("/webhooks/sms/inbound", {"msisdn": "12015550101", "to": "12015550200", "text": "a\x00b"})
    assert response.status_code in (200, 204)
    assert "\x00" not in str(CallEvent.objects.get(source="sms-inbound").payload)


# --- The query string, read without a QueryDict (webhooks.payloads.query_fields) -----------------


@given(
    st.text(
        alphabet=st.sampled_from(list("ab=&;+%20FFC3A9e9zZ0\u00e9\u20ac ")),
        max_size=60,
    )
)
@settings_hypothesis(max_examples=300, deadline=None)
def test_query_fields_read_a_query_string_exactly_as_request_get_does(query):
    from django.test import RequestFactory

    from webhooks.payloads import query_fields

    # A WSGI server hands over the raw bytes as latin-1 text.
    raw = query.encode("utf-8").decode("latin-1")
    fast = RequestFactory().get("/webhooks/answer")
    fast.environ["QUERY_STRING"] = raw
    slow = RequestFactory().get("/webhooks/answer")
    slow.environ["QUERY_STRING"] = raw
    assert query_fields(fast) == {k: v for k, v in slow.GET.items()}
    assert "GET" not in fast.__dict__  # read on its own, not through Django's QueryDict


def test_query_fields_refuse_too_many_fields_as_request_get_does(settings):
    from django.core.exceptions import TooManyFieldsSent
    from django.test import RequestFactory

    from webhooks.payloads import query_fields

    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    request = RequestFactory().get("/webhooks/answer?a=1&b=2&c=3&d=4")
    with pytest.raises(TooManyFieldsSent):
        query_fields(request)
    assert query_fields(RequestFactory().get("/webhooks/answer?a=1&b=2&a=3")) == {"a": "3", "b": "2"}
