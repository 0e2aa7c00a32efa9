"""Masked messages end to end through the webhook and the sandbox: relay both ways, once per
messageId, unicode intact, out of session, opt-out, caps and callbacks."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.delivery.sms import notification_send
from proxy.message_outbox import message_retry
from proxy.messaging import keyword_of, number_opt_out
from proxy.models import CallbackDelivery, CallEvent, Conversation, Message, MessageContact, Notification
from proxy.services import conversation_close
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import ConversationFactory, ParticipantFactory
from tests.proxy.messages_helpers import alice_and_bob, text_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(service, pool, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    return alice_and_bob(service, pool)


@pytest.fixture
def send(client, django_capture_on_commit_callbacks):
    def send(**kwargs):
        response, params = text_in(client, django_capture_on_commit_callbacks, **kwargs)
        assert response.status_code == 200
        return params

    return send


def _callbacks(event: str) -> list[dict]:
    return [d.payload for d in CallbackDelivery.objects.filter(event=event).order_by("pk")]


# --- Relay ---------------------------------------------------------------------------------------


def test_a_text_is_relayed_to_the_other_participant_from_their_proxy_number(pair, send):
    conversation, alice, bob = pair
    send(sender=ALICE, to=alice.proxy_number_id)
    sent = SandboxMessage.objects.get()
    assert (sent.from_number, sent.to_number, sent.text) == (bob.proxy_number_id, BOB, "at the gate, blue car")
    message = Message.objects.get()
    assert (message.kind, message.status, message.conversation_id) == ("relay", "sent", conversation.pk)
    assert (message.from_participant_id, message.to_participant_id) == (alice.pk, bob.pk)
    assert message.message_id == sent.message_id
    assert sent.client_ref == f"message-{message.pk}"


def test_a_pin_only_participant_has_no_pair_to_text_from(service, pool, send):
    """PIN mode always: one person may hold one proxy number in many conversations, so the
    number texted cannot tell which one a text is for: kept, not relayed."""
    for n, external_id in enumerate(("order-a", "order-b")):
        conversation = ConversationFactory(service=service, external_id=external_id)
        ParticipantFactory(
            conversation=conversation,
            position=0,
            real_number=ALICE,
            proxy_number=pool[0],
            routes_by_pair=False,
            pin=f"11111{n}",
        )
        ParticipantFactory(
            conversation=conversation, position=1, real_number=BOB if n else CAROL, proxy_number=pool[1],
            routes_by_pair=False, pin=f"22222{n}",
        )  # fmt: skip
    send(sender=ALICE, to=pool[0].number)
    assert not SandboxMessage.objects.exists()
    assert list(Message.objects.values_list("kind", "conversation_id")) == [("inbound", None)]


def test_the_reply_comes_back_the_same_way(pair, send):
    _, alice, _ = pair
    send(sender=ALICE, to=alice.proxy_number_id, text="at the gate")
    # Bob answers the number the text came from: his own proxy number.
    send(sender=BOB, to=SandboxMessage.objects.get().from_number, text="blue car, coming")
    reply = SandboxMessage.objects.get(text="blue car, coming")
    assert (reply.from_number, reply.to_number) == (alice.proxy_number_id, ALICE)


def test_the_same_message_id_twice_is_relayed_once(pair, send):
    _, alice, _ = pair
    params = send(sender=ALICE, to=alice.proxy_number_id)
    send(params=params)
    send(params={**params, "timestamp": "1764763200", "nonce": "another"})
    assert SandboxMessage.objects.count() == 1
    assert Message.objects.count() == 1
    assert CallEvent.objects.filter(source="sms-inbound").count() == 1


def test_unicode_is_relayed_intact(pair, send):
    _, alice, _ = pair
    text = "Je suis là 🚗 — 到了, porte B"
    send(sender=ALICE, to=alice.proxy_number_id, text=text, type="unicode")
    sent = SandboxMessage.objects.get()
    assert (sent.text, sent.message_type, sent.to_number) == (text, "unicode", BOB)


def test_a_relay_is_reported_with_ids_only(pair, send, service):
    service.callback_url = "https://marketplace.example/hooks"
    service.save()
    conversation, alice, bob = pair
    send(sender=ALICE, to=alice.proxy_number_id)
    [received] = _callbacks("message.received")
    data = received["data"]
    assert data["message"]["from_participant"] == str(alice.public_id)
    assert data["message"]["to_participant"] == str(bob.public_id)
    assert data["message"]["status"] == "queued"
    assert data["conversation"]["id"] == str(conversation.pk)
    assert "text" not in data["message"]
    flat = str(received)
    assert ALICE not in flat and BOB not in flat and "blue car" not in flat
    [status] = _callbacks("message.status")
    assert status["data"]["message"]["status"] == "sent"


def test_the_text_is_in_callbacks_only_when_the_service_asks(pair, send, service):
    service.callback_url = "https://marketplace.example/hooks"
    service.callback_includes_text = True
    service.save()
    _, alice, _ = pair
    send(sender=ALICE, to=alice.proxy_number_id)
    assert _callbacks("message.received")[0]["data"]["message"]["text"] == "at the gate, blue car"


def test_texts_are_never_logged(pair, send, caplog):
    _, alice, _ = pair
    with caplog.at_level(logging.DEBUG):
        send(sender=ALICE, to=alice.proxy_number_id, text="secret meeting point 42")
        send(sender=CAROL, to=alice.proxy_number_id, text="stranger danger words")
    assert SandboxMessage.objects.count() == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert " sent to " in logged and "out of session" in logged
    for private in ("secret meeting", "stranger danger", ALICE, BOB, CAROL):
        assert private not in logged


# --- Delivery: receipts, retries, exactly once ---------------------------------------------------


def test_a_delivery_receipt_marks_the_relay_delivered(pair, send, client, service):
    service.callback_url = "https://marketplace.example/hooks"
    service.save()
    _, alice, _ = pair
    send(sender=ALICE, to=alice.proxy_number_id)
    sent = SandboxMessage.objects.get()
    receipt = {"msisdn": BOB, "to": sent.from_number, "messageId": sent.message_id, "status": "delivered",
               "err-code": "0", "price": "0.00750000", "client-ref": sent.client_ref,
               "message-timestamp": "2026-12-03 12:00:05"}  # fmt: skip
    assert client.get("/webhooks/sms/status", receipt).status_code == 200
    message = Message.objects.get()
    assert message.status == "delivered" and str(message.price) == "0.00750000"
    assert [c["data"]["message"]["status"] for c in _callbacks("message.status")] == ["sent", "delivered"]
    # A late "accepted" never moves it back.
    client.get("/webhooks/sms/status", {**receipt, "status": "accepted", "message-timestamp": "later"})
    assert Message.objects.get().status == "delivered"


def test_a_failed_receipt_fails_the_relay(pair, send, client):
    _, alice, _ = pair
    send(sender=ALICE, to=alice.proxy_number_id)
    sent = SandboxMessage.objects.get()
    client.get("/webhooks/sms/status", {"msisdn": BOB, "messageId": sent.message_id, "status": "rejected",
                                        "err-code": "6", "client-ref": sent.client_ref})  # fmt: skip
    message = Message.objects.get()
    assert message.status == "failed" and "err-code 6" in message.last_error


# --- Out of session ------------------------------------------------------------------------------


def test_a_stranger_is_kept_not_relayed_and_reported_without_their_number(pair, send, service):
    service.callback_url = "https://marketplace.example/hooks"
    service.save()
    _, alice, _ = pair
    send(sender=CAROL, to=alice.proxy_number_id)
    assert not SandboxMessage.objects.exists()
    kept = Message.objects.get()
    assert (kept.kind, kept.status, kept.reason) == ("inbound", "received", "out_of_session")
    [report] = _callbacks("message.out_of_session")
    assert report["data"] == {
        "message": {"id": kept.pk, "to": alice.proxy_number_id, "reason": "out_of_session",
                    "created_at": report["data"]["message"]["created_at"]},
        "participant": None,
        "conversation": None,
    }  # fmt: skip
    assert CAROL not in str(report)


def test_a_text_after_the_conversation_ended_names_it(pair, send, service):
    service.callback_url = "https://marketplace.example/hooks"
    service.save()
    conversation, alice, _ = pair
    conversation_close(conversation=conversation)
    send(sender=ALICE, to=alice.proxy_number_id)
    assert not SandboxMessage.objects.exists()
    [report] = _callbacks("message.out_of_session")
    assert report["data"]["participant"] == str(alice.public_id)
    assert report["data"]["conversation"]["id"] == str(conversation.pk)
    assert report["data"]["conversation"]["status"] == "closed"


def test_a_conversation_past_its_expiry_relays_nothing(pair, send):
    conversation, alice, _ = pair
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    send(sender=ALICE, to=alice.proxy_number_id)
    assert not SandboxMessage.objects.exists()
    assert Message.objects.get().reason == "out_of_session"


def test_no_callback_without_a_callback_url(pair, send):
    _, alice, _ = pair
    send(sender=CAROL, to=alice.proxy_number_id)
    assert not CallbackDelivery.objects.exists()


def test_the_auto_reply_goes_once_a_day_per_sender(pair, send, service):
    service.auto_reply_text = "This number only works during your trip."
    service.save()
    _, alice, _ = pair
    send(sender=CAROL, to=alice.proxy_number_id, text="hello?")
    send(sender=CAROL, to=alice.proxy_number_id, text="hello??")
    [reply] = SandboxMessage.objects.all()
    assert (reply.from_number, reply.to_number, reply.text) == (alice.proxy_number_id, CAROL, service.auto_reply_text)
    # A day later, the next stranger's text is answered again.
    a_day_ago = timezone.now() - timedelta(days=1, seconds=1)
    MessageContact.objects.filter(real_number=CAROL).update(auto_replied_at=a_day_ago)
    send(sender=CAROL, to=alice.proxy_number_id, text="anyone?")
    assert SandboxMessage.objects.count() == 2
    assert Message.objects.filter(kind="auto_reply").count() == 2


def test_no_auto_reply_to_a_sender_that_is_not_a_number(pair, send, service):
    service.auto_reply_text = "Out of session."
    service.save()
    _, alice, _ = pair
    send(sender="InfoSMS", to=alice.proxy_number_id)
    send(sender="999999999999", to=alice.proxy_number_id)
    assert not SandboxMessage.objects.exists()
    assert sorted(Message.objects.values_list("reason", flat=True)) == ["bad_sender", "bad_sender"]


# --- Opt-out -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["STOP", "stop", " Stop. ", "unsubscribe", "UNSUBSCRIBE!"])
def test_stop_keywords_opt_out_and_are_not_relayed(pair, send, service, text):
    _, _, bob = pair
    send(sender=BOB, to=bob.proxy_number_id, text=text)
    assert not SandboxMessage.objects.exists()
    assert MessageContact.objects.get(service=service, real_number=BOB).opted_out
    assert Message.objects.get().reason == "opt_out"


def test_keywords_are_whole_texts_only():
    assert keyword_of("Please stop at the gate") is None
    assert keyword_of("stopping by") is None
    assert keyword_of("start") == "start"
    assert keyword_of(None) is None


def test_an_opted_out_number_gets_no_relays_until_start(pair, send, service):
    _, alice, bob = pair
    send(sender=BOB, to=bob.proxy_number_id, text="STOP")
    send(sender=ALICE, to=alice.proxy_number_id, text="are you there?")
    assert not SandboxMessage.objects.exists()
    refused = Message.objects.get(kind="relay")
    assert (refused.status, refused.reason) == ("failed", "recipient_opted_out")
    # Bob can still write; his texts reach Alice.
    send(sender=BOB, to=bob.proxy_number_id, text="I can't talk")
    assert SandboxMessage.objects.get().to_number == ALICE
    send(sender=BOB, to=bob.proxy_number_id, text="Start")
    send(sender=ALICE, to=alice.proxy_number_id, text="now?")
    assert SandboxMessage.objects.filter(to_number=BOB, text="now?").count() == 1
    assert MessageContact.objects.get(real_number=BOB).opted_in_at is not None


def test_an_opted_out_number_gets_no_notification(service, pool):
    conversation = ConversationFactory(service=service)
    alice = ParticipantFactory(conversation=conversation, real_number=ALICE, proxy_number=pool[0], validation="valid")
    note = Notification.objects.create(
        participant=alice, service=service, to_number=ALICE, from_number=pool[0].number, text="call +1 ..."
    )
    number_opt_out(service=service, real_number=ALICE)
    assert notification_send(notification_id=note.pk).result == "failed"
    note.refresh_from_db()
    assert "opted out" in note.last_error
    assert not SandboxMessage.objects.exists()


def test_an_opt_out_is_per_service(pair, send, service, pool):
    from tests.factories import ServiceFactory, VirtualNumberFactory

    other = ServiceFactory(slug="other")
    conversation = ConversationFactory(service=other)
    number = VirtualNumberFactory(service=other, number="12015550299")
    ParticipantFactory(conversation=conversation, real_number=CAROL, proxy_number=number)
    ParticipantFactory(conversation=conversation, real_number=BOB, proxy_number=number)
    send(sender=BOB, to=pair[2].proxy_number_id, text="STOP")  # to Acme's number
    send(sender=CAROL, to=number.number, text="hi from the other marketplace")
    assert SandboxMessage.objects.get().to_number == BOB


# --- Caps ----------------------------------------------------------------------------------------


def test_over_the_conversation_cap_texts_are_held_and_reported(pair, send, service, django_capture_on_commit_callbacks):
    service.message_limit_conversation = 2
    service.callback_url = "https://marketplace.example/hooks"
    service.save()
    _, alice, bob = pair
    send(sender=ALICE, to=alice.proxy_number_id, text="one")
    send(sender=BOB, to=bob.proxy_number_id, text="two")
    send(sender=ALICE, to=alice.proxy_number_id, text="three")
    assert sorted(SandboxMessage.objects.values_list("text", flat=True)) == ["one", "two"]
    held = Message.objects.get(status="held")
    assert (held.text, held.reason, held.api_status) == ("three", "conversation_limit", "failed")
    [report] = _callbacks("message.held")
    assert report["data"]["message"]["reason"] == "conversation_limit"
    # Staff relay it after all.
    with django_capture_on_commit_callbacks(execute=True):
        assert message_retry(message=held)
    assert SandboxMessage.objects.filter(text="three").count() == 1
    held.refresh_from_db()
    assert held.status == "sent"


def test_over_the_service_cap_texts_are_held(service, pool, send, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    service.message_limit_service = 2
    service.save()
    _, alice, _ = alice_and_bob(service, pool)
    conversation = ConversationFactory(service=service)
    ParticipantFactory(conversation=conversation, real_number=CAROL, proxy_number=pool[1])
    ParticipantFactory(conversation=conversation, real_number="12015550104", proxy_number=pool[1])
    send(sender=ALICE, to=alice.proxy_number_id, text="one")
    send(sender=CAROL, to=pool[1].number, text="two")
    send(sender=CAROL, to=pool[1].number, text="three")
    assert SandboxMessage.objects.count() == 2
    assert Message.objects.get(status="held").reason == "service_limit"


def test_a_capped_conversation_does_not_count_against_another(pair, send, service, pool):
    service.message_limit_conversation = 1
    service.save()
    _, alice, _ = pair
    other = ConversationFactory(service=service)
    ParticipantFactory(conversation=other, real_number=CAROL, proxy_number=pool[1])
    ParticipantFactory(conversation=other, real_number="12015550104", proxy_number=pool[1])
    send(sender=ALICE, to=alice.proxy_number_id, text="one")
    send(sender=ALICE, to=alice.proxy_number_id, text="two")
    send(sender=CAROL, to=pool[1].number, text="three")
    assert sorted(SandboxMessage.objects.values_list("text", flat=True)) == ["one", "three"]


def test_caps_of_zero_are_off(pair, send, service):
    service.message_limit_conversation = 0
    service.message_limit_service = 0
    service.save()
    _, alice, _ = pair
    for n in range(5):
        send(sender=ALICE, to=alice.proxy_number_id, text=f"text {n}")
    assert SandboxMessage.objects.count() == 5
