"""REST API v1: conversations and their calls, as the public contract describes them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.utils import timezone

from proxy.models import Call, Conversation, Notification, Recording, Transcript
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory

URL = "/api/v1/conversations"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


def create(api, **overrides):
    body = {"participants": [{"number": "+" + ALICE, "name": "Alice"}, {"number": "+" + BOB, "name": "Bob"}]}
    body.update(overrides)
    return api.post(URL, body, format="json")


# --- POST ------------------------------------------------------------------------------------------


def test_create_returns_the_contract_shape(api, service, pool):
    response = create(api, external_id="order-1", metadata={"order": 1}, record=True, ttl=600)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "id",
        "status",
        "external_id",
        "expires_at",
        "record",
        "metadata",
        "created_at",
        "participants",
        "closed_reason",
        "call_time_limit",
        "ring_timeout",
    }
    assert body["status"] == "open"
    assert body["external_id"] == "order-1"
    assert body["metadata"] == {"order": 1}
    assert body["record"] is True
    assert response["Location"] == f"{URL}/{body['id']}"
    conversation = Conversation.objects.get(pk=body["id"])
    assert conversation.service == service
    assert abs((conversation.expires_at - conversation.created_at).total_seconds() - 600) < 5
    alice, bob = body["participants"]
    assert set(alice) == {"id", "number", "name", "country", "proxy_number", "pin", "notification"}
    assert alice["pin"] is None and bob["pin"] is None  # the service has PINs off
    assert (alice["number"], alice["name"], alice["country"]) == (ALICE, "Alice", "US")
    assert bob["number"] == BOB
    pool_numbers = {n.number for n in pool}
    assert alice["proxy_number"] in pool_numbers and bob["proxy_number"] in pool_numbers


@pytest.mark.parametrize("notify", [True, False])
def test_create_answers_what_a_read_back_shows(api, pool, notify):
    # The 201 is built from the rows in hand, not read back: it must equal a fresh GET.
    created = create(api, external_id="order-1", metadata={"order": 1.5, "tags": ["a"]}, ttl=600, notify=notify)

    shown = api.get(f"{URL}/{created.json()['id']}")

    assert created.status_code == 201 and shown.status_code == 200
    assert created.json() == shown.json()
    notifications = [p["notification"] for p in created.json()["participants"]]
    if notify:
        assert [n["status"] for n in notifications] == ["queued", "queued"]
    else:
        assert notifications == [None, None]


def test_create_round_trips_are_bounded(api, pool, django_assert_max_num_queries):
    # Key look-up (and its last-used mark), the claim, then one transaction: advisory
    # locks (PostgreSQL), the pool and what both people hold in one read, two inserts,
    # the pool re-check, SMS rows, and the stored answer. Inside the test's transaction
    # the claim and the creation add two savepoints each.
    with django_assert_max_num_queries(14):
        response = api.post(
            URL,
            {"participants": [{"number": "+" + ALICE}, {"number": "+" + BOB}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="one",
        )
    assert response.status_code == 201, response.content


def test_create_answers_ids_where_bulk_inserts_return_none(api, pool, monkeypatch):
    # SQLite before 3.35 gives no ids back from a bulk insert: the answer still has them.
    from django.db import connection

    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)

    created = create(api)

    assert created.status_code == 201, created.content
    ids = [p["id"] for p in created.json()["participants"]]
    conversation = Conversation.objects.get(pk=created.json()["id"])
    # Opaque ids (issue 18): the API shows each participant's public id, not its row key.
    assert ids == [str(p) for p in conversation.participants.order_by("position").values_list("public_id", flat=True)]


def test_create_reads_national_numbers_with_the_country_hint(api, pool):
    response = api.post(
        URL,
        {"participants": [{"number": "(201) 555-0101", "country": "us"}, {"number": "+1 201-555-0102"}]},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert [p["number"] for p in response.json()["participants"]] == [ALICE, BOB]


def test_create_reads_national_numbers_in_the_service_default_country(api, service):
    service.default_country = "GB"
    service.save()
    VirtualNumberFactory(service=service, number="447400000001", country="GB")
    VirtualNumberFactory(service=service, number="447400000002", country="GB")

    response = api.post(URL, {"participants": [{"number": "020 7946 0000"}, {"number": "07400 123456"}]}, format="json")

    assert response.status_code == 201, response.content
    people = response.json()["participants"]
    assert [(p["number"], p["country"]) for p in people] == [("442079460000", "GB"), ("447400123456", "GB")]


def test_call_time_limit_and_ring_timeout_are_kept_and_drive_the_connect(api, service, pool, client):
    body = create(api, call_time_limit=300, ring_timeout=20).json()
    assert (body["call_time_limit"], body["ring_timeout"]) == (300, 20)
    alice = body["participants"][0]
    ncco = client.get("/webhooks/answer", {"from": ALICE, "to": alice["proxy_number"]}).json()
    assert (ncco[-1]["limit"], ncco[-1]["timeout"]) == (300, 20)


def test_call_time_limit_and_ring_timeout_default_to_the_services(api, service, pool):
    service.call_time_limit, service.connect_timeout = 900, 33
    service.save()
    body = create(api).json()
    assert (body["call_time_limit"], body["ring_timeout"]) == (900, 33)
    conversation = Conversation.objects.get(pk=body["id"])
    assert (conversation.call_time_limit, conversation.ring_timeout) == (900, 33)
    # A conversation from before these fields shows the service's values.
    Conversation.objects.filter(pk=conversation.pk).update(call_time_limit=None, ring_timeout=None)
    service.call_time_limit = 1200
    service.save()
    shown = api.get(f"{URL}/{conversation.pk}").json()
    assert (shown["call_time_limit"], shown["ring_timeout"]) == (1200, 33)


def test_create_defaults_ttl_to_the_service_default(api, service, pool):
    service.default_ttl = 7200
    service.save()

    body = create(api).json()

    conversation = Conversation.objects.get(pk=body["id"])
    assert abs((conversation.expires_at - conversation.created_at).total_seconds() - 7200) < 5


def test_notify_by_default_reports_each_participants_sms(api, pool):
    body = create(api).json()

    notifications = [p["notification"] for p in body["participants"]]
    assert all(n is not None and n["status"] == "queued" and n["error"] is None for n in notifications)
    assert Notification.objects.count() == 2


def test_notification_is_null_when_not_notified(api, pool):
    body = create(api, notify=False).json()

    assert [p["notification"] for p in body["participants"]] == [None, None]


def test_create_without_participants_names_the_field(api, pool):
    response = api.post(URL, {}, format="json")

    assert response.status_code == 400
    assert "participants" in response.json()


@pytest.mark.parametrize("count", [0, 1, 3])
def test_exactly_two_participants(api, pool, count):
    people = [{"number": "+" + n} for n in (ALICE, BOB, CAROL)[:count]]

    response = api.post(URL, {"participants": people}, format="json")

    assert response.status_code == 400
    assert isinstance(response.json()["participants"], list)
    assert "two participants" in response.json()["participants"][0]


def test_participants_must_be_a_list(api, pool):
    response = api.post(URL, {"participants": "alice and bob"}, format="json")

    assert response.status_code == 400
    assert "list" in response.json()["participants"][0]


def test_invalid_number_is_named_per_participant(api, pool):
    response = api.post(URL, {"participants": [{"number": "+44 7700 900123"}, {"number": "+" + BOB}]}, format="json")

    assert response.status_code == 400
    errors = response.json()["participants"]
    assert errors[1] == {}
    assert set(errors[0]) == {"number"}
    assert errors[0]["number"][0]


def test_participants_must_differ_after_normalisation(api, pool):
    response = api.post(
        URL, {"participants": [{"number": "+" + ALICE}, {"number": "(201) 555-0101", "country": "US"}]}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"participants": [{}, {"number": ["The two participants must have different numbers."]}]}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"external_id": "x" * 201}, "external_id"),
        ({"metadata": {"blob": "x" * (8 * 1024)}}, "metadata"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": {"nul": "a\u0000b"}}, "metadata"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": 31536001}, "ttl"),
        ({"ttl": "abc"}, "ttl"),
        ({"ttl": 1.5}, "ttl"),
        ({"record": "maybe"}, "record"),
        ({"notify": []}, "notify"),
        ({"call_time_limit": 0}, "call_time_limit"),
        ({"call_time_limit": 7201}, "call_time_limit"),
        ({"ring_timeout": 4}, "ring_timeout"),
        ({"ring_timeout": 121}, "ring_timeout"),
    ],
)
def test_limits_name_the_bad_field(api, pool, override, field):
    response = create(api, **override)

    assert response.status_code == 400
    assert set(response.json()) == {field}


@pytest.mark.parametrize(
    ("participant", "field"),
    [
        ({"number": "+" + ALICE, "name": "n" * 101}, "name"),
        ({"number": "+" + ALICE, "country": "XX"}, "country"),
        ({"number": "+" + ALICE, "country": "USA"}, "country"),
        ({"number": ""}, "number"),
        ({"name": "no number"}, "number"),
        ({"number": {"digits": ALICE}}, "number"),
    ],
)
def test_participant_limits_are_nested(api, pool, participant, field):
    response = api.post(URL, {"participants": [participant, {"number": "+" + BOB}]}, format="json")

    assert response.status_code == 400
    errors = response.json()["participants"]
    assert field in errors[0] and errors[1] == {}


def test_limits_at_the_edge_are_accepted(api, pool):
    response = api.post(
        URL,
        {
            "participants": [{"number": "+" + ALICE, "name": "n" * 100}, {"number": "+" + BOB}],
            "external_id": "e" * 200,
            "ttl": 31536000,
            "metadata": {"k": "v" * (8 * 1024 - 20)},
        },
        format="json",
    )

    assert response.status_code == 201, response.content


def test_pool_exhausted_is_409_with_code(api, service):
    response = create(api)

    assert response.status_code == 409
    assert response.json()["code"] == "pool_exhausted"
    assert response.json()["detail"]
    assert not Conversation.objects.exists()


# --- GET list ----------------------------------------------------------------------------------------


def _conversation(service, **kwargs):
    conversation = ConversationFactory(service=service, **kwargs)
    ParticipantFactory(conversation=conversation, position=0)
    ParticipantFactory(conversation=conversation, position=1)
    return conversation


def test_list_is_paginated_newest_first(api, service):
    now = timezone.now()
    made = [_conversation(service, created_at=now - timedelta(minutes=i)) for i in range(3)]

    response = api.get(URL, {"page_size": 2})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert body["previous"] is None
    assert body["next"].startswith("http://testserver/api/v1/conversations?")
    assert [c["id"] for c in body["results"]] == [str(made[0].pk), str(made[1].pk)]
    second = api.get(body["next"]).json()
    assert [c["id"] for c in second["results"]] == [str(made[2].pk)]
    assert second["next"] is None


def test_list_filters_by_effective_status(api, service):
    now = timezone.now()
    live = _conversation(service)
    past_due = _conversation(service, expires_at=now - timedelta(seconds=1))
    expired = _conversation(service, status="expired", expires_at=now - timedelta(hours=1))
    closed = _conversation(service, status="closed")

    def ids(status):
        response = api.get(URL, {"status": status})
        assert response.status_code == 200
        return {c["id"] for c in response.json()["results"]}

    assert ids("open") == {str(live.pk)}
    assert ids("expired") == {str(past_due.pk), str(expired.pk)}
    assert ids("closed") == {str(closed.pk)}
    results = {c["id"]: c["status"] for c in api.get(URL).json()["results"]}
    assert results[str(past_due.pk)] == "expired"


def test_list_filters_by_external_id(api, service):
    wanted = _conversation(service, external_id="order-7")
    _conversation(service, external_id="order-8")

    body = api.get(URL, {"external_id": "order-7"}).json()

    assert [c["id"] for c in body["results"]] == [str(wanted.pk)]


def test_list_rejects_an_unknown_status(api, service):
    response = api.get(URL, {"status": "sleeping"})

    assert response.status_code == 400
    assert "status" in response.json()


def test_list_query_count_does_not_grow_with_results(api, service, django_assert_max_num_queries):
    for _ in range(5):
        _conversation(service)

    with django_assert_max_num_queries(8):
        assert api.get(URL).status_code == 200


# --- GET / PATCH / DELETE one -----------------------------------------------------------------------


def test_get_one_shows_latest_notification(api, service):
    conversation = _conversation(service)
    first = conversation.participants.order_by("position").first()
    old = Notification.objects.create(
        participant=first, service=service, to_number=first.real_number, from_number="1", text="t", status="failed"
    )
    Notification.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    Notification.objects.create(
        participant=first,
        service=service,
        to_number=first.real_number,
        from_number="1",
        text="t",
        status="delivered",
    )

    body = api.get(f"{URL}/{conversation.pk}").json()

    notification = body["participants"][0]["notification"]
    assert set(notification) == {"status", "updated_at", "error"}
    assert notification["status"] == "delivered"
    assert notification["error"] is None
    assert body["participants"][1]["notification"] is None


def test_get_one_reads_past_due_as_expired(api, service):
    conversation = _conversation(service, expires_at=timezone.now() - timedelta(seconds=1))

    assert api.get(f"{URL}/{conversation.pk}").json()["status"] == "expired"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_id_is_json_404(api, service, bad_id):
    response = api.get(f"{URL}/{bad_id}")

    assert response.status_code == 404
    assert response.json()["detail"]


def test_patch_extends_ttl_from_now_and_replaces_metadata(api, service):
    conversation = _conversation(service, metadata={"old": True})

    response = api.patch(f"{URL}/{conversation.pk}", {"ttl": 3600 * 5, "metadata": {"new": 1}}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["metadata"] == {"new": 1}
    conversation.refresh_from_db()
    remaining = (conversation.expires_at - timezone.now()).total_seconds()
    assert 3600 * 5 - 60 < remaining <= 3600 * 5


def test_changes_read_the_conversation_once_in_full(api, service, django_assert_max_num_queries):
    # Key look-up and its last-used mark aside: DELETE and the calls list need the row
    # alone; PATCH locks and writes it, then reads it in full (3 queries) for its answer.
    conversation = _conversation(service)
    api.get(f"{URL}/{conversation.pk}/calls")  # the key's last-used mark is written once

    with django_assert_max_num_queries(4):  # key, row, calls count, calls page
        assert api.get(f"{URL}/{conversation.pk}/calls").status_code == 200
    with django_assert_max_num_queries(10):
        assert api.patch(f"{URL}/{conversation.pk}", {"metadata": {"x": 1}}, format="json").status_code == 200
    with django_assert_max_num_queries(12):  # the close itself: lock, end, free, calls to hang up, callbacks
        assert api.delete(f"{URL}/{conversation.pk}").status_code == 204


def test_patch_closes(api, service):
    conversation = _conversation(service)

    response = api.patch(f"{URL}/{conversation.pk}", {"status": "closed"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "closed"
    assert not conversation.participants.filter(active=True).exists()


@pytest.mark.parametrize(
    "body", [{"status": "open"}, {"status": "expired"}, {"ttl": 0}, {"ttl": "x"}, {"metadata": "x"}]
)
def test_patch_validates(api, service, body):
    conversation = _conversation(service)

    response = api.patch(f"{URL}/{conversation.pk}", body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == set(body)


@pytest.mark.parametrize(
    "state",
    [{"status": "closed"}, {"status": "expired"}, {"expires_at": timezone.now() - timedelta(seconds=1)}],
)
def test_patch_ended_is_409(api, service, state):
    conversation = _conversation(service, **state)

    response = api.patch(f"{URL}/{conversation.pk}", {"ttl": 60}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "conversation_ended"


def test_delete_closes_and_is_idempotent(api, service):
    conversation = _conversation(service)

    first = api.delete(f"{URL}/{conversation.pk}")
    second = api.delete(f"{URL}/{conversation.pk}")

    assert (first.status_code, second.status_code) == (204, 204)
    assert first.content == b""
    conversation.refresh_from_db()
    assert conversation.status == "closed"


def test_delete_leaves_an_ended_conversation_as_it_is(api, service):
    ended_at = timezone.now() - timedelta(hours=2)
    conversation = _conversation(service, status="expired", closed_reason="expired", ended_at=ended_at)

    assert api.delete(f"{URL}/{conversation.pk}").status_code == 204

    conversation.refresh_from_db()
    assert (conversation.status, conversation.closed_reason, conversation.ended_at) == ("expired", "expired", ended_at)


def test_delete_of_past_due_conversation_keeps_it_expired(api, service):
    conversation = _conversation(service, expires_at=timezone.now() - timedelta(seconds=1))

    assert api.delete(f"{URL}/{conversation.pk}").status_code == 204

    assert api.get(f"{URL}/{conversation.pk}").json()["status"] == "expired"


# --- calls ---------------------------------------------------------------------------------------------


def test_calls_newest_first_with_contract_shape(api, service, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    conversation = _conversation(service)
    caller, callee = conversation.participants.order_by("position")
    now = timezone.now()
    older = Call.objects.create(
        uuid="call-1",
        conversation_uuid="CON-1",
        conversation=conversation,
        service=service,
        direction="inbound",
        from_participant=caller,
        to_participant=callee,
        status="completed",
        started_at=now - timedelta(minutes=10),
        answered_at=now - timedelta(minutes=9),
        ended_at=now - timedelta(minutes=8),
        duration=60,
        price=Decimal("0.0120"),
        created_at=now - timedelta(minutes=10),
    )
    newer = Call.objects.create(
        uuid="call-2", conversation=conversation, service=service, status="ringing", created_at=now
    )
    # Not copied yet: Vonage's URL (which needs the application's JWT) is never shown.
    Recording.objects.create(recording_uuid="rec-1", call=older, recording_url="https://api.nexmo.com/v1/files/aaa")
    downloaded = Recording.objects.create(
        recording_uuid="rec-2", call=newer, recording_url="https://x/v1/files/b", status="downloaded"
    )
    downloaded.file.save("rec-2.mp3", ContentFile(b"ID3"), save=True)
    transcript = Transcript.objects.create(
        recording_uuid="rec-2", call=newer, transcription_url="https://x/v1/files/t", status="downloaded"
    )
    transcript.file.save("rec-2.json", ContentFile(b"{}"), save=True)

    response = api.get(f"{URL}/{conversation.pk}/calls")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["next"] is None
    first, second = body["results"]
    assert first["uuid"] == "call-2"
    assert first["recording_url"] == "http://testserver/api/v1/recordings/rec-2"
    assert first["transcript_url"] == "http://testserver/api/v1/recordings/rec-2/transcript"
    assert set(second) == {
        "uuid",
        "conversation_uuid",
        "status",
        "direction",
        "from_participant",
        "to_participant",
        "started_at",
        "answered_at",
        "ended_at",
        "duration",
        "price",
        "recording_url",
        "transcript_url",
        "hook",
    }
    assert second["hook"] is None
    assert second["from_participant"] == str(caller.public_id) and second["to_participant"] == str(callee.public_id)
    assert second["duration"] == 60
    assert Decimal(second["price"]) == Decimal("0.012") and isinstance(second["price"], str)
    assert second["recording_url"] is None and second["transcript_url"] is None
    assert first["price"] is None and first["duration"] is None and first["from_participant"] is None


def test_calls_without_recording_have_null_url(api, service):
    conversation = _conversation(service)
    Call.objects.create(uuid="call-3", conversation=conversation, service=service)

    body = api.get(f"{URL}/{conversation.pk}/calls").json()

    assert body["results"][0]["recording_url"] is None


def test_calls_of_unknown_conversation_is_404(api, service):
    assert api.get(f"{URL}/00000000-0000-0000-0000-000000000000/calls").status_code == 404


# --- paths -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"{URL}/", "/api/v1/conversation", "/api/v1/"])
def test_other_paths_are_json_404_without_redirects(api, service, path):
    for method in (api.get, api.post):
        response = method(path, {}, format="json")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


@pytest.fixture
def downloaded_recording(service, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    conversation = _conversation(service)
    call = Call.objects.create(uuid="call-r", conversation=conversation, service=service)
    recording = Recording.objects.create(
        recording_uuid="rec-9",
        call=call,
        conversation=conversation,
        recording_url="https://x/v1/files/9",
        status="downloaded",
    )
    recording.file.save("rec-9.mp3", ContentFile(b"ID3-audio"), save=True)
    return recording


def test_recording_url_downloads_the_file_for_its_service(api, downloaded_recording):
    url = api.get(f"{URL}/{downloaded_recording.conversation_id}/calls").json()["results"][0]["recording_url"]

    response = api.get(url, HTTP_ACCEPT="audio/mpeg")

    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert b"".join(response.streaming_content) == b"ID3-audio"


def test_recording_is_404_to_another_service_and_401_without_key(downloaded_recording):
    from rest_framework.test import APIClient

    from proxy.api_keys import api_key_create
    from tests.factories import ServiceFactory

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(service=ServiceFactory(slug='other'))[1]}")

    response = other.get("/api/v1/recordings/rec-9", HTTP_ACCEPT="audio/mpeg")

    assert response.status_code == 404
    assert response.json()["detail"]
    assert APIClient().get("/api/v1/recordings/rec-9").status_code == 401


def test_recording_not_downloaded_yet_is_404(api, service):
    Recording.objects.create(recording_uuid="rec-p", conversation=_conversation(service), recording_url="https://x/1")

    assert api.get("/api/v1/recordings/rec-p").status_code == 404
