"""Idempotency-Key on POST /api/v1/conversations (IETF httpapi idempotency-key draft)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from proxy.errors import IdempotencyKeyReused, RequestInProgress
from proxy.idempotency import (
    idempotency_claim,
    idempotency_records_purge,
    request_fingerprint,
)
from proxy.models import Conversation, IdempotencyRecord
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ServiceFactory

URL = "/api/v1/conversations"
BODY = {"participants": [{"number": "+" + ALICE}, {"number": "+" + BOB}], "external_id": "order-1"}


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


def post(api, body, key="key-1", **extra):
    return api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def test_retry_with_equal_json_replays_the_first_201(api, pool):
    first = post(api, BODY)
    # Same JSON, other bytes: keys reordered, other spacing.
    reordered = json.dumps({"external_id": "order-1", "participants": BODY["participants"]}, indent=4)
    second = api.generic("POST", URL, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1")

    assert first.status_code == 201 and second.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second["Location"] == first["Location"]
    assert Conversation.objects.count() == 1


def test_replay_returns_the_original_body_even_after_changes(api, pool):
    first = post(api, BODY).json()
    api.delete(f"{URL}/{first['id']}")

    replay = post(api, BODY)

    assert replay.json() == first
    assert replay.json()["status"] == "open"


def test_quoted_key_is_the_same_key(api, pool):
    post(api, BODY, key="abc")

    replay = post(api, BODY, key='"abc"')

    assert replay["Idempotent-Replayed"] == "true"


def test_same_key_other_body_is_422(api, pool):
    post(api, BODY)

    response = post(api, {**BODY, "external_id": "order-2"})

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Conversation.objects.count() == 1


def test_other_key_creates_anew(api, pool):
    post(api, BODY, key="a")
    response = post(api, {**BODY, "participants": [{"number": "+" + ALICE}, {"number": "+" + CAROL}]}, key="b")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Conversation.objects.count() == 2


def test_request_in_progress_is_409(api, service, pool):
    IdempotencyRecord.objects.create(service=service, key="key-1", request_hash=request_fingerprint(BODY))

    response = post(api, BODY)

    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert not Conversation.objects.exists()


def test_abandoned_claim_is_taken_over(api, service, pool):
    IdempotencyRecord.objects.create(
        service=service,
        key="key-1",
        request_hash=request_fingerprint(BODY),
        created_at=timezone.now() - timedelta(minutes=5),
    )

    response = post(api, BODY)

    assert response.status_code == 201
    assert IdempotencyRecord.objects.get(key="key-1").response_status == 201


def test_only_a_201_is_remembered(api, service, pool):
    invalid = {**BODY, "ttl": 0}
    assert post(api, invalid).status_code == 400
    assert not IdempotencyRecord.objects.exists()

    # A pool of one number cannot serve two people who... share nothing: exhaust it instead.
    for number in pool:
        number.state = "draining"
        number.save()
    assert post(api, BODY).status_code == 409
    assert not IdempotencyRecord.objects.exists()

    for number in pool:
        number.state = "active"
        number.save()
    retry = post(api, BODY)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry


def test_a_key_is_per_service(api, pool):
    other = ServiceFactory(slug="other")
    from proxy.api_keys import api_key_create

    other_api = APIClient()
    other_api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(service=other)[1]}")
    post(api, BODY)

    response = post(other_api, BODY)

    # Not a replay of the first service's conversation: the other service has no pool.
    assert response.status_code == 409
    assert response.json()["code"] == "pool_exhausted"


def test_expired_record_is_replaced(api, service, pool):
    IdempotencyRecord.objects.create(
        service=service,
        key="key-1",
        request_hash="something else",
        response_status=201,
        response_body={"id": "old"},
        created_at=timezone.now() - timedelta(hours=25),
    )

    response = post(api, BODY)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    record = IdempotencyRecord.objects.get(key="key-1")
    assert record.response_body["id"] == response.json()["id"]


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_key_is_400(api, pool, key):
    response = post(api, BODY, key=key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()


def test_purge_deletes_only_old_records(service):
    now = timezone.now()
    IdempotencyRecord.objects.create(service=service, key="old", request_hash="h", created_at=now - timedelta(days=2))
    IdempotencyRecord.objects.create(service=service, key="new", request_hash="h", created_at=now)

    assert idempotency_records_purge(now=now) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_fingerprint_ignores_key_order_and_spacing():
    assert request_fingerprint({"a": 1, "b": [1, 2]}) == request_fingerprint(json.loads('{ "b": [1,2], "a": 1 }'))
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})


@pytest.mark.django_db
def test_claim_raises_for_reuse_and_in_progress(service):
    idempotency_claim(service=service, key="k", fingerprint="one")

    with pytest.raises(RequestInProgress):
        idempotency_claim(service=service, key="k", fingerprint="one")
    with pytest.raises(IdempotencyKeyReused):
        idempotency_claim(service=service, key="k", fingerprint="two")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_once(api_key, pool):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises writers, so there is no race to test")
    workers = 6
    barrier = threading.Barrier(workers)
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
        try:
            barrier.wait(timeout=30)
            response = post(client, BODY, key="race")
            with lock:
                results.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == workers
    assert Conversation.objects.count() == 1
    # Exactly one created; the others were told it was running, or got its replay.
    assert results.count(201) >= 1
    assert set(results) <= {201, 409}
    assert IdempotencyRecord.objects.get(key="race").response_status == 201
    replayed = post(APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key}"), BODY, key="race")
    assert replayed["Idempotent-Replayed"] == "true"


def test_equal_json_numbers_spelt_differently_have_one_fingerprint():
    from proxy.idempotency import request_fingerprint

    assert request_fingerprint({"metadata": {"x": 1, "y": [2.0]}}) == request_fingerprint(
        {"metadata": {"y": [2], "x": 1.0}}
    )
    assert request_fingerprint({"x": 1}) != request_fingerprint({"x": 1.5})


def test_a_request_that_died_after_its_commit_is_replayed_at_once(api, service, pool, monkeypatch):
    from proxy.api import views

    def die(body):
        raise SystemExit("worker killed after the commit, before answering")

    monkeypatch.setattr(views.ConversationListCreateApi, "_location", staticmethod(die))
    with pytest.raises(SystemExit):
        post(api, BODY)
    monkeypatch.undo()
    created = Conversation.objects.get()
    # The answer was stored in the commit that created the conversation.
    record = IdempotencyRecord.objects.get(key="key-1")
    assert (record.response_status, record.conversation_id) == (201, created.pk)

    retry = post(api, BODY)

    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.json() == record.response_body
    assert retry.json()["id"] == str(created.pk)
    assert Conversation.objects.count() == 1


def test_an_abandoned_claim_without_a_conversation_runs_afresh(api, service, pool):
    IdempotencyRecord.objects.create(
        service=service, key="key-1", request_hash="whatever", created_at=timezone.now() - timedelta(minutes=5)
    )

    response = post(api, BODY)

    assert response.status_code == 201 and "Idempotent-Replayed" not in response
    record = IdempotencyRecord.objects.get(key="key-1")
    assert record.conversation_id == Conversation.objects.get().pk


def test_a_request_whose_key_was_taken_over_undoes_its_conversation(api, service, pool, monkeypatch):
    from proxy.api import views

    real_output = views._output

    def taken_over_meanwhile(conversation, request):
        # Another request found this claim abandoned and took the key over.
        IdempotencyRecord.objects.filter(key="key-1").update(created_at=timezone.now() + timedelta(seconds=1))
        return real_output(conversation, request)

    monkeypatch.setattr(views, "_output", taken_over_meanwhile)

    response = post(api, BODY)

    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("key", ["a\x00b", "\x00", "tab\there", "line\nbreak", "caf\u00e9", "\x7f"])
def test_a_key_with_a_control_or_non_ascii_character_is_400_naming_the_header(api, pool, key):
    """Found by the fuzzer: a NUL in the key was a 500 on PostgreSQL, whose text cannot hold one."""
    response = post(api, BODY, key=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert Conversation.objects.count() == 0
