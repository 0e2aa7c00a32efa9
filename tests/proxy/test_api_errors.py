"""REST API v1 errors: 401, tenant isolation (404), 413, malformed JSON, 429."""

from __future__ import annotations

import io
import json

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from proxy.api_keys import api_key_create, api_key_revoke
from proxy.models import Call, Conversation
from proxy.throttling import ServiceRateThrottle
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory

URL = "/api/v1/conversations"
BODY = {"participants": [{"number": "+" + ALICE}, {"number": "+" + BOB}]}


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# --- 401 -------------------------------------------------------------------------------------------


def _assert_401(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_missing_key_is_401_with_bearer_challenge(db, method):
    _assert_401(getattr(APIClient(), method)(URL, BODY, format="json"))


@pytest.mark.parametrize("header", ["Bearer mk_unknown", "Bearer ", "Basic dXNlcjpwYXNz", "mk_nokeyword"])
def test_unknown_or_malformed_key_is_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    _assert_401(client.get(URL))


def test_revoked_key_is_401(service):
    row, key = api_key_create(service=service)
    api_key_revoke(api_key=row)

    _assert_401(client_for(key).get(URL))


def test_inactive_service_key_is_401(service, api_key):
    service.is_active = False
    service.save()

    _assert_401(client_for(api_key).get(URL))


def test_a_used_key_records_when(service):
    row, key = api_key_create(service=service)

    assert client_for(key).get(URL).status_code == 200

    row.refresh_from_db()
    assert row.last_used_at is not None


@pytest.mark.parametrize("suffix", ["", "/00000000-0000-0000-0000-000000000000", "/x/calls"])
def test_every_endpoint_needs_a_key(db, suffix):
    _assert_401(APIClient().get(URL + suffix))


# --- tenant isolation -----------------------------------------------------------------------------


@pytest.fixture
def foreign_conversation(db) -> Conversation:
    other = ServiceFactory(slug="other-market")
    conversation = ConversationFactory(service=other, external_id="theirs")
    ParticipantFactory(conversation=conversation, position=0)
    ParticipantFactory(conversation=conversation, position=1)
    Call.objects.create(uuid="foreign-call", conversation=conversation, service=other)
    return conversation


def test_another_services_conversation_is_404_for_every_method(api, foreign_conversation):
    path = f"{URL}/{foreign_conversation.pk}"

    responses = {
        "get": api.get(path),
        "patch": api.patch(path, {"status": "closed"}, format="json"),
        "patch-invalid": api.patch(path, {"ttl": 0}, format="json"),
        "delete": api.delete(path),
        "calls": api.get(path + "/calls"),
    }

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 404)
    foreign_conversation.refresh_from_db()
    assert foreign_conversation.status == "open"


def test_list_shows_only_own_conversations(api, service, foreign_conversation):
    own = ConversationFactory(service=service, external_id="theirs")

    everything = api.get(URL).json()
    by_external_id = api.get(URL, {"external_id": "theirs"}).json()

    assert [c["id"] for c in everything["results"]] == [str(own.pk)]
    assert by_external_id["count"] == 1


def test_pool_of_another_service_is_not_used(api, service, db):
    ServiceFactory(slug="rich")
    from tests.factories import VirtualNumberFactory

    VirtualNumberFactory.create_batch(3, service=ServiceFactory(slug="rich"))

    response = api.post(URL, BODY, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "pool_exhausted"


# --- 413 -------------------------------------------------------------------------------------------


def test_body_over_64_kib_is_413(api, pool):
    body = {**BODY, "metadata": {"blob": "x" * (65 * 1024)}}

    response = api.post(URL, body, format="json")

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert not Conversation.objects.exists()


def test_body_of_exactly_64_kib_is_read(api, pool):
    padding = 64 * 1024 - len(json.dumps({**BODY, "metadata": {"blob": ""}}).encode())
    raw = json.dumps({**BODY, "metadata": {"blob": "x" * padding}}).encode()
    assert len(raw) == 64 * 1024

    response = api.generic("POST", URL, raw, content_type="application/json")

    # Read and validated (metadata is over 8 KiB), not refused for size.
    assert response.status_code == 400
    assert "metadata" in response.json()


def _chunked(api_key: str, payload: bytes):
    # The test client always sets Content-Length; a chunked request (as gunicorn passes it on)
    # has none, and its de-chunked body in wsgi.input.
    return Client().generic(
        "POST",
        URL,
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
        CONTENT_TYPE="application/json",
        **{"wsgi.input": io.BytesIO(payload)},
    )


def test_chunked_body_over_the_limit_is_413_not_500(api_key, pool):
    payload = json.dumps({**BODY, "metadata": {"blob": "x" * (70 * 1024)}}).encode()

    response = _chunked(api_key, payload)

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_chunked_body_within_the_limit_is_read(api_key, pool):
    response = _chunked(api_key, json.dumps(BODY).encode())

    assert response.status_code == 201, response.content
    assert [p["number"] for p in response.json()["participants"]] == [ALICE, BOB]


def test_garbage_content_length_is_400(api_key):
    response = Client().generic("GET", URL, HTTP_AUTHORIZATION=f"Bearer {api_key}", CONTENT_LENGTH="lots")

    assert response.status_code == 400


# --- malformed JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"participants": [}',
        b"[" * 20000 + b"]" * 20000,
        b"[" * 40 + b"]" * 40,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
        b'{"ttl": NaN}',
        b'{"ttl": Infinity}',
        b'{"metadata": {"x": 1e999}}',
        b'{"metadata": {"x": "\\ud800"}}',
        b'{"ttl": 1' + b"0" * 5000 + b"}",
        b"\xff\xfe{}",
    ],
)
def test_malformed_or_absurd_json_is_400(api, pool, raw):
    response = api.generic("POST", URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"]


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"null", b"42", b""])
def test_json_that_is_not_an_object_is_400(api, pool, raw):
    response = api.generic("POST", URL, raw, content_type="application/json")

    assert response.status_code == 400


def test_form_bodies_are_415(api, pool):
    response = api.post(URL, {"participants": "x"})

    assert response.status_code == 415


def test_patch_with_deep_json_is_400(api, service):
    conversation = ConversationFactory(service=service)

    response = api.generic(
        "PATCH", f"{URL}/{conversation.pk}", b'{"metadata": ' + b"[" * 100 + b"]" * 100 + b"}", "application/json"
    )

    assert response.status_code == 400


# --- 429 -------------------------------------------------------------------------------------------


@pytest.fixture
def frozen_clock(monkeypatch):
    # One fixed instant: the requests fall in one window however slow the machine is.
    instant = [timezone.now().timestamp() // 1 + 0.25]
    monkeypatch.setattr(ServiceRateThrottle, "timer", staticmethod(lambda: instant[0]))
    return instant


def test_over_the_service_rate_is_429_with_retry_after(service, api_key, frozen_clock):
    service.rate_limit = 2
    service.save()
    client = client_for(api_key)

    codes = [client.get(URL).status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    throttled = client.get(URL)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "1"
    frozen_clock[0] += 1
    assert client.get(URL).status_code == 200


def test_rate_is_per_service(service, api_key, frozen_clock):
    service.rate_limit = 1
    service.save()
    other = ServiceFactory(slug="other", rate_limit=1)
    mine, theirs = client_for(api_key), client_for(api_key_create(service=other)[1])

    assert mine.get(URL).status_code == 200
    assert mine.get(URL).status_code == 429
    assert theirs.get(URL).status_code == 200


def test_rate_limit_zero_means_unlimited(service, api_key, frozen_clock):
    service.rate_limit = 0
    service.save()
    client = client_for(api_key)

    assert {client.get(URL).status_code for _ in range(5)} == {200}


def test_unauthenticated_requests_are_401_not_429(service, frozen_clock):
    service.rate_limit = 1
    service.save()

    assert [APIClient().get(URL).status_code for _ in range(3)] == [401, 401, 401]


def test_one_400_names_every_bad_field(api, pool):
    body = {"participants": [{"number": "bad", "name": "x" * 101, "country": "ZZ"}, {"number": "+12015550106"}]}
    response = api.post("/api/v1/conversations", body, format="json")
    assert response.status_code == 400
    first = response.json()["participants"][0]
    assert {"number", "name", "country"} <= set(first)


@pytest.mark.parametrize("method", ["put", "post", "options"])
def test_other_methods_on_another_services_conversation_are_404(api, method):
    other = ConversationFactory()
    for path in (f"/api/v1/conversations/{other.pk}", f"/api/v1/conversations/{other.pk}/calls"):
        assert getattr(api, method)(path, {}, format="json").status_code == 404


def test_a_nul_in_a_recording_id_is_404(api):
    assert api.get("/api/v1/recordings/abc%00def").status_code == 404


@pytest.mark.postgres
def test_the_rate_counter_in_redis_expires(service, api_key, settings):
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("needs REDIS_URL: the counter lives in Redis")
    service.rate_limit = 100
    service.save()

    assert client_for(api_key).get(URL).status_code == 200

    client = backend._cache.get_client(write=False)
    keys = client.keys(backend.make_and_validate_key(f"throttle:service:{service.pk}:*"))
    assert len(keys) == 1
    assert 0 < client.ttl(keys[0]) <= 2 * ServiceRateThrottle.window + 1
    assert int(client.get(keys[0])) == 1


def test_a_database_gone_under_a_request_is_a_clean_503(api, monkeypatch):
    from django.db import OperationalError

    from proxy.api import views

    def gone(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(views.ConversationListCreateApi, "get", gone)
    response = api.get("/api/v1/conversations")
    assert response.status_code == 503
    assert response.json()["code"] == "temporarily_unavailable"
    assert response["Retry-After"] == "1"
