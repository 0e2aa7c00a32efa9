"""Concatenated inbound texts: joined in part order before relaying, within a bounded wait;
parts that never complete are relayed as they are."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from proxy import tasks
from proxy.delivery.messages import message_parts_join
from proxy.models import CallEvent, Message, MessagePart
from proxy.outbox import outbox_redrive
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB
from tests.proxy.messages_helpers import INBOUND_URL, alice_and_bob, inbound_params, text_in

pytestmark = pytest.mark.django_db

PARTS = ["At the gate, ", "blue car, ", "plate AB-123."]


@pytest.fixture
def pair(service, pool, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    settings.MESSAGE_PARTS_WAIT_SECONDS = 60
    return alice_and_bob(service, pool)


def _part(number: int, *, ref: str = "7f", total: int = 3, text: str | None = None, **extra) -> dict[str, str]:
    return inbound_params(
        sender=ALICE,
        to="12015550200",
        text=text if text is not None else PARTS[number - 1],
        message_id=f"part-{ref}-{number}",
        **{"concat": "true", "concat-ref": ref, "concat-total": str(total), "concat-part": str(number), **extra},
    )


@pytest.fixture
def send(client, django_capture_on_commit_callbacks):
    def send(params):
        response, _ = text_in(client, django_capture_on_commit_callbacks, params=params)
        assert response.status_code == 200

    return send


def test_parts_in_any_order_are_joined_in_part_order_then_relayed(pair, send):
    send(_part(3))
    send(_part(1))
    assert not SandboxMessage.objects.exists()
    send(_part(2))
    sent = SandboxMessage.objects.get()
    assert (sent.text, sent.to_number) == ("".join(PARTS), BOB)
    message = Message.objects.get()
    assert (message.parts, message.inbound_ids) == (3, ["part-7f-1", "part-7f-2", "part-7f-3"])
    assert not MessagePart.objects.exists()


def test_a_part_delivered_twice_counts_once(pair, send):
    send(_part(1))
    send(_part(1))
    send(_part(2))
    assert not SandboxMessage.objects.exists()
    assert MessagePart.objects.count() == 2
    send(_part(3))
    assert SandboxMessage.objects.get().text == "".join(PARTS)
    send(_part(2))  # Vonage retries a part already joined: nothing happens
    assert SandboxMessage.objects.count() == 1 and Message.objects.count() == 1
    assert CallEvent.objects.filter(source="sms-inbound").count() == 3


def test_an_incomplete_message_is_relayed_once_the_wait_is_over(pair, send, django_capture_on_commit_callbacks):
    send(_part(1))
    send(_part(3))
    first = MessagePart.objects.get(part=1)
    # Before the wait is over the timer only says how long is left.
    MessagePart.objects.update(received_at=timezone.now() - timedelta(seconds=50))
    early = message_parts_join(part_id=first.pk)
    assert early.result == "retry" and 5 < early.retry_in <= 10
    assert not SandboxMessage.objects.exists()
    MessagePart.objects.update(received_at=timezone.now() - timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        done = message_parts_join(part_id=first.pk)
    assert done.result == "done"
    assert SandboxMessage.objects.get().text == PARTS[0] + PARTS[2]
    assert Message.objects.get().parts == 2
    # The other timer (or a repeat) finds nothing left to do.
    assert message_parts_join(part_id=first.pk).result == "skipped"


def test_a_lost_timer_is_redriven_after_the_wait(pair, send, django_capture_on_commit_callbacks):
    send(_part(2))
    MessagePart.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        counts = outbox_redrive()
    assert counts["message-parts"] == 1
    assert SandboxMessage.objects.get().text == PARTS[1]


def test_waiting_parts_are_not_redriven_early(pair, send):
    send(_part(2))
    assert outbox_redrive()["message-parts"] == 0
    assert MessagePart.objects.count() == 1


def test_a_reused_ref_starts_a_new_message(pair, send, django_capture_on_commit_callbacks):
    send(_part(1, total=2, text="old one, "))
    # Part 1 again under the same ref with another id: a new message that reuses the ref.
    send({**_part(1, total=2, text="new one, "), "messageId": "part-new-1"})
    send({**_part(2, total=2, text="new end"), "messageId": "part-new-2"})
    assert sorted(SandboxMessage.objects.values_list("text", flat=True)) == ["new one, new end", "old one, "]


def test_unicode_parts_are_joined_intact(pair, send):
    texts = ["Je suis là 🚗 — ", "到了"]
    send(_part(1, total=2, text=texts[0], type="unicode"))
    send(_part(2, total=2, text=texts[1], type="unicode"))
    sent = SandboxMessage.objects.get()
    assert (sent.text, sent.message_type) == ("".join(texts), "unicode")


@pytest.mark.parametrize(
    "concat",
    [
        {"concat-total": "x"},
        {"concat-part": "4"},
        {"concat-part": "0"},
        {"concat-total": "1", "concat-part": "1"},
        {"concat-ref": ""},
        {"concat-total": "99999"},
    ],
)
def test_concat_fields_that_make_no_sense_are_read_as_a_whole_message(pair, send, concat):
    send({**_part(1), **concat})
    assert SandboxMessage.objects.get().text == PARTS[0]
    assert not MessagePart.objects.exists()


def test_the_timer_task_skips_a_part_already_joined(pair, send):
    send(_part(1, total=2))
    part = MessagePart.objects.get()
    send(_part(2, total=2))
    assert tasks.assemble_message.apply(args=[part.pk]).get() == "skipped"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parts_arriving_at_once_are_joined_exactly_once(service, pool, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite admits one writer at a time, so nothing runs concurrently")
    settings.VONAGE_SIGNATURE_SECRET = ""
    alice_and_bob(service, pool)
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def post(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(Client().post(INBOUND_URL, _part(number)).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200, 200]
    assert SandboxMessage.objects.get().text == "".join(PARTS)
    assert Message.objects.count() == 1 and not MessagePart.objects.exists()


def test_a_part_whose_long_id_repeats_another_once_cut_is_never_an_error(pair, send):
    send({**_part(1), "messageId": "X" * 64 + "first"})
    send({**_part(2), "messageId": "X" * 64 + "second"})
    assert MessagePart.objects.count() == 1
    assert CallEvent.objects.filter(source="sms-inbound").count() == 2
