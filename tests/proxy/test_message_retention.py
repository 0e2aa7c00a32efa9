"""messages_redact: the retention job's way to remove texts and the real numbers beside them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from proxy.messaging import messages_redact, messages_redact_unattached, number_opt_out
from proxy.models import CallEvent, Message, MessageContact
from proxy.services import conversation_close
from tests.conftest import ALICE, BOB, CAROL
from tests.proxy.messages_helpers import alice_and_bob, text_in
from webhooks.payloads import REDACTED_PAYLOAD

pytestmark = pytest.mark.django_db


@pytest.fixture
def relayed(client, service, pool, settings, django_capture_on_commit_callbacks):
    settings.VONAGE_SIGNATURE_SECRET = ""
    conversation, alice, bob = alice_and_bob(service, pool)
    text_in(client, django_capture_on_commit_callbacks, sender=ALICE, to=alice.proxy_number_id, text="gate 4")
    text_in(client, django_capture_on_commit_callbacks, sender=BOB, to=bob.proxy_number_id, text="STOP")
    return conversation


def test_the_texts_and_real_numbers_of_an_ended_conversation_go(relayed):
    conversation_close(conversation=relayed)
    assert messages_redact(conversation_ids=[relayed.pk]) == 2
    for message in Message.objects.all():
        assert message.redacted and message.text == ""
        assert ALICE not in (message.from_number, message.to_number)
        assert BOB not in (message.from_number, message.to_number)
    relay = Message.objects.get(kind="relay")
    assert relay.from_number == "12015550202"  # the pool number stays
    assert relay.status == "sent" and relay.message_id  # the rest of the record stays
    for event in CallEvent.objects.filter(source="sms-inbound"):
        assert event.payload == REDACTED_PAYLOAD and event.payload_redacted
    # Idempotent.
    assert messages_redact(conversation_ids=[relayed.pk]) == 0


def test_an_open_conversation_is_left_alone(relayed):
    assert messages_redact(conversation_ids=[relayed.pk]) == 0
    assert Message.objects.get(kind="relay").text == "gate 4"
    assert CallEvent.objects.filter(source="sms-inbound", payload_redacted=False).count() == 2


def test_only_the_given_conversations_are_redacted(relayed, service, pool):
    from tests.factories import ConversationFactory

    other = ConversationFactory(service=service)
    Message.objects.create(kind="platform", service=service, conversation=other, to_number=CAROL, text="keep me")
    conversation_close(conversation=relayed)
    conversation_close(conversation=other)
    assert messages_redact(conversation_ids=[relayed.pk]) == 2
    assert Message.objects.get(conversation=other).text == "keep me"


def test_texts_in_no_conversation_go_by_age(client, service, pool, settings, django_capture_on_commit_callbacks):
    settings.VONAGE_SIGNATURE_SECRET = ""
    service.auto_reply_text = "Out of session."
    service.save()
    alice_and_bob(service, pool)
    text_in(client, django_capture_on_commit_callbacks, sender=CAROL, to="12015550200", text="who is this")
    number_opt_out(service=service, real_number="12015550104")
    assert Message.objects.filter(conversation__isnull=True).count() == 2  # the text and the auto-reply
    assert messages_redact_unattached(before=timezone.now() - timedelta(days=1)) == 0
    later = timezone.now() + timedelta(days=2)
    assert messages_redact_unattached(before=later) == 2
    assert not Message.objects.filter(text__gt="").exists()
    assert CAROL not in str(list(Message.objects.values_list("from_number", "to_number")))
    # Opt-outs stay (they must be honoured); strangers' auto-reply marks go.
    assert list(MessageContact.objects.values_list("real_number", flat=True)) == ["12015550104"]


def test_texts_in_no_conversation_go_per_service(client, service, pool, settings, django_capture_on_commit_callbacks):
    settings.VONAGE_SIGNATURE_SECRET = ""
    alice_and_bob(service, pool)
    text_in(client, django_capture_on_commit_callbacks, sender=CAROL, to="12015550200", text="who is this")
    later = timezone.now() + timedelta(days=2)
    assert messages_redact_unattached(before=later, service_ids=[service.pk + 1]) == 0
    assert messages_redact_unattached(before=later, service_ids=[service.pk]) == 1
