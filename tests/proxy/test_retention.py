"""Retention: the personal data of ended conversations goes after the service's retention_days."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connection, connections, transaction
from django.utils import timezone

from proxy import retention
from proxy.models import Call, CallEvent, Conversation, Notification, Recording, Service, Transcript
from proxy.retention import REDACTED_PAYLOAD, PersonalData, personal_data, retention_apply
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory

NOW = timezone.now()


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def _stored(storage) -> list[str]:
    return sorted(str(path.relative_to(storage)) for path in storage.rglob("*") if path.is_file())


_NUMBERS = itertools.count(3000)


def _ended(service: Service, *, days_ago: float, tag: str, status: str = "closed") -> Conversation:
    """A conversation of ALICE and BOB that ended ``days_ago``, with a call, its events, SMS,
    a copied recording and a copied transcript."""
    ended_at = NOW - timedelta(days=days_ago)
    conversation = ConversationFactory(
        service=service, status=status, ended_at=ended_at, expires_at=ended_at, external_id=f"order-{tag}"
    )
    # A number of its own per conversation: hash(tag) changed with each run's hash seed, and
    # two tags of one test sometimes met on the same number.
    number = VirtualNumberFactory(service=service, number=f"1201555{next(_NUMBERS):04d}")
    alice = ParticipantFactory(
        conversation=conversation, real_number=ALICE, name="Alice", proxy_number=number, position=0, active=False
    )
    ParticipantFactory(
        conversation=conversation, real_number=BOB, name="Bob", proxy_number=number, position=1, active=False
    )
    call = Call.objects.create(
        uuid=f"leg-{tag}", conversation=conversation, service=service, from_number=ALICE, to_number=number.number
    )
    CallEvent.objects.create(
        call=call,
        call_uuid=call.uuid,
        kind="status",
        dedup_key=f"ev-{tag}",
        payload={"from": ALICE, "to": number.number},
    )
    Notification.objects.create(
        participant=alice, service=service, to_number=ALICE, from_number=number.number, text="To reach Bob, call ..."
    )
    recording = Recording.objects.create(
        recording_uuid=f"rec-{tag}",
        call=call,
        conversation=conversation,
        recording_url="https://api.nexmo.com/x",
        status="downloaded",
    )
    recording.file.save(f"rec-{tag}.mp3", ContentFile(b"ID3 audio"))
    transcript = Transcript.objects.create(
        recording_uuid=f"rec-{tag}",
        call=call,
        conversation=conversation,
        transcription_url="https://api.nexmo.com/t",
        status="downloaded",
    )
    transcript.file.save(f"rec-{tag}.json", ContentFile(b'{"channels": []}'))
    return conversation


def _assert_redacted(conversation: Conversation) -> None:
    conversation.refresh_from_db()
    assert conversation.redacted_at is not None
    assert list(conversation.participants.values_list("real_number", "name")) == [("", ""), ("", "")]
    assert list(Call.objects.filter(conversation=conversation).values_list("from_number", "to_number")) == [("", "")]
    assert {event.payload_redacted for event in CallEvent.objects.filter(call__conversation=conversation)} == {True}
    assert CallEvent.objects.filter(call__conversation=conversation).first().payload == REDACTED_PAYLOAD
    notification = Notification.objects.get(participant__conversation=conversation)
    assert (notification.text, notification.to_number) == ("", "")
    for model in (Recording, Transcript):
        row = model.objects.get(conversation=conversation)
        assert (row.status, row.file.name) == ("deleted", "")
    # What accounting needs stays: the rows, statuses, times, external ids.
    assert conversation.external_id.startswith("order-") and conversation.status in ("closed", "expired")


def _assert_kept(conversation: Conversation) -> None:
    conversation.refresh_from_db()
    assert conversation.redacted_at is None
    assert set(conversation.participants.values_list("real_number", flat=True)) == {ALICE, BOB}
    assert Recording.objects.get(conversation=conversation).status == "downloaded"


@pytest.mark.django_db
def test_personal_data_goes_after_the_services_retention_and_the_rest_stays(service, storage, caplog):
    service.retention_days = 30
    service.save()
    old = _ended(service, days_ago=31, tag="old")
    recent = _ended(service, days_ago=29, tag="recent")
    expired = _ended(service, days_ago=45, tag="expired", status="expired")
    opened = ConversationFactory(service=service)  # open: never touched, however old
    Conversation.objects.filter(pk=opened.pk).update(created_at=NOW - timedelta(days=400))
    assert len(_stored(storage)) == 6

    with caplog.at_level("INFO", logger="proxy.retention"):
        counts = retention_apply(now=NOW)

    _assert_redacted(old)
    _assert_redacted(expired)
    _assert_kept(recent)
    opened.refresh_from_db()
    assert opened.redacted_at is None
    assert len(_stored(storage)) == 2 and all("recent" in path for path in _stored(storage))
    assert counts == {
        "conversations": 2,
        "participants": 4,
        "calls": 2,
        "call_events": 2,
        "notifications": 2,
        "recording_files": 2,
        "transcript_files": 2,
    }
    assert "retention: 2 conversations of acme redacted" in caplog.text
    assert "'recording_files': 2" in caplog.text


@pytest.mark.django_db
def test_running_again_changes_nothing(service):
    service.retention_days = 30
    service.save()
    _ended(service, days_ago=40, tag="a")
    assert retention_apply(now=NOW)["conversations"] == 1
    assert retention_apply(now=NOW) == {}
    assert retention_apply(now=NOW + timedelta(days=1)) == {}


@pytest.mark.django_db
def test_each_service_has_its_own_retention_never_past_the_ceiling(service, settings):
    other = Service.objects.create(name="Other", slug="other", retention_days=5)
    service.retention_days = 60
    service.save()
    mine = _ended(service, days_ago=40, tag="mine")
    theirs = _ended(other, days_ago=6, tag="theirs")
    retention_apply(now=NOW)
    _assert_kept(mine)
    _assert_redacted(theirs)

    settings.RETENTION_MAX_DAYS = 30  # the operator lowered the ceiling since
    retention_apply(now=NOW)
    _assert_redacted(mine)


@pytest.mark.django_db
def test_batches_go_on_until_nothing_is_left(service):
    service.retention_days = 1
    service.save()
    conversations = [_ended(service, days_ago=2 + i, tag=f"b{i}") for i in range(5)]
    assert retention_apply(now=NOW, batch=2)["conversations"] == 5
    for conversation in conversations:
        _assert_redacted(conversation)


@pytest.mark.django_db
def test_a_failing_batch_is_rolled_back_and_left_for_the_next_run(service, storage, monkeypatch, caplog):
    service.retention_days = 1
    service.save()
    conversation = _ended(service, days_ago=3, tag="f")

    def bucket_down(self, name):
        raise ConnectionError("bucket unreachable")

    monkeypatch.setattr("django.core.files.storage.FileSystemStorage.delete", bucket_down)
    counts = retention_apply(now=NOW)
    assert counts["failed_batches"] == 1 and "conversations" not in counts
    assert "the next run takes it up again" in caplog.text
    _assert_kept(conversation)  # nothing half done: no row says "deleted" while its file is there
    assert len(_stored(storage)) == 2

    monkeypatch.undo()
    assert retention_apply(now=NOW)["conversations"] == 1
    _assert_redacted(conversation)
    assert _stored(storage) == []


@pytest.fixture
def plugged_kind():
    """Another kind of personal data plugged in the documented way (as masked SMS does)."""
    seen: list[list] = []

    def redact(conversation_ids: list) -> int:
        seen.append(sorted(conversation_ids))
        return len(conversation_ids)

    personal_data(PersonalData(name="plugged_in", redact=redact))
    yield seen
    retention._KINDS.pop("plugged_in")


@pytest.mark.django_db
def test_another_kind_of_personal_data_plugs_in_with_one_function(service, plugged_kind):
    service.retention_days = 10
    service.save()
    due = _ended(service, days_ago=11, tag="due")
    _ended(service, days_ago=9, tag="not-yet")
    counts = retention_apply(now=NOW)
    assert plugged_kind == [[due.pk]]
    assert counts["plugged_in"] == 1
    assert [kind.name for kind in retention.personal_data_kinds()][:2] == ["recording_files", "transcript_files"]


@pytest.mark.django_db
def test_data_of_no_conversation_follows_call_event_retention_days(settings):
    settings.CALL_EVENT_RETENTION_DAYS = 30
    old_event = CallEvent.objects.create(
        kind="sms_inbound", dedup_key="sms", payload={"msisdn": ALICE, "text": "my address is 1 Main St"}
    )
    recent_event = CallEvent.objects.create(kind="status", dedup_key="recent", payload={"from": ALICE})
    CallEvent.objects.filter(pk=old_event.pk).update(received_at=NOW - timedelta(days=31))
    unknown_call = Call.objects.create(uuid="stray", from_number=ALICE, to_number="12015550200")
    Call.objects.filter(pk=unknown_call.pk).update(created_at=NOW - timedelta(days=31))

    counts = retention_apply(now=NOW)

    assert counts == {"unowned_events": 1, "unowned_calls": 1}
    old_event.refresh_from_db()
    recent_event.refresh_from_db()
    unknown_call.refresh_from_db()
    assert old_event.payload == REDACTED_PAYLOAD and old_event.payload_redacted
    assert (old_event.kind, old_event.dedup_key) == ("sms_inbound", "sms")
    assert recent_event.payload == {"from": ALICE}
    assert (unknown_call.from_number, unknown_call.to_number) == ("", "")

    settings.CALL_EVENT_RETENTION_DAYS = 0  # kept for ever
    CallEvent.objects.create(kind="status", dedup_key="ancient", payload={"from": BOB})
    CallEvent.objects.filter(dedup_key="ancient").update(received_at=NOW - timedelta(days=3650))
    assert retention_apply(now=NOW) == {}


@pytest.mark.django_db
def test_the_beat_task_and_the_former_one_both_run_the_policy(service):
    from proxy.tasks import retention_run
    from webhooks.tasks import call_event_payloads_redact

    service.retention_days = 1
    service.save()
    _ended(service, days_ago=2, tag="t1")
    assert retention_run.apply().get()["conversations"] == 1
    _ended(service, days_ago=2, tag="t2")
    assert call_event_payloads_redact.apply().get()["conversations"] == 1


@pytest.mark.django_db
def test_retention_days_is_one_day_up_to_the_documented_maximum(service, settings):
    assert Service._meta.get_field("retention_days").get_default() == settings.RETENTION_DEFAULT_DAYS == 90
    for days, valid in ((0, False), (1, True), (90, True), (91, False)):
        service.retention_days = days
        if valid:
            service.full_clean()
        else:
            with pytest.raises(ValidationError) as caught:
                service.full_clean()
            assert "retention_days" in caught.value.message_dict


@pytest.mark.postgres
def test_a_batch_another_run_holds_is_skipped_not_waited_for(transactional_db, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SKIP LOCKED is PostgreSQL's (SQLite has no row locks)")
    service = Service.objects.create(name="Locks", slug="locks", retention_days=1)
    held = _ended(service, days_ago=5, tag="held")
    free = _ended(service, days_ago=4, tag="free")
    locked, release = threading.Event(), threading.Event()

    def other_run() -> None:
        try:
            with transaction.atomic():
                list(Conversation.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=other_run)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        counts = retention_apply(now=NOW)  # would block on the held row without SKIP LOCKED
    finally:
        release.set()
        holder.join(timeout=30)
    assert counts["conversations"] == 1
    _assert_redacted(free)
    _assert_kept(held)
    assert retention_apply(now=NOW)["conversations"] == 1
    _assert_redacted(held)


@pytest.mark.django_db
def test_texts_go_with_their_conversation_and_strangers_texts_with_the_service(service):
    """Masked messages plug into the job (proxy.messaging registers them): relayed texts of a
    conversation past the retention, and texts of no conversation older than it."""
    from proxy.models import Message

    service.retention_days = 30
    service.save()
    old, recent = _ended(service, days_ago=31, tag="old"), _ended(service, days_ago=1, tag="recent")
    relayed = [
        Message.objects.create(
            kind="relay", status="delivered", service=service, conversation=conversation,
            from_number="12015553001", to_number=BOB, text="at the gate, blue car",
        )
        for conversation in (old, recent)
    ]  # fmt: skip
    stranger_old, stranger_new = (
        Message.objects.create(
            kind="inbound", status="received", service=service, from_number="12015550199",
            to_number="12015553000", text="hello?", created_at=NOW - timedelta(days=days),
        )
        for days in (40, 2)
    )  # fmt: skip

    counts = retention_apply(now=NOW)

    assert (counts["messages"], counts["unowned_messages"]) == (1, 1)
    shown = {}
    names = ("old", "recent", "stranger_old", "stranger_new")
    for name, message in zip(names, (*relayed, stranger_old, stranger_new), strict=True):
        message.refresh_from_db()
        shown[name] = (message.text, message.from_number, message.to_number)
    # Real numbers and words go; the pool number a stranger texted stays.
    assert shown == {
        "old": ("", "12015553001", ""),
        "recent": ("at the gate, blue car", "12015553001", BOB),
        "stranger_old": ("", "", "12015553000"),
        "stranger_new": ("hello?", "12015550199", "12015553000"),
    }
    assert retention_apply(now=NOW) == {}
