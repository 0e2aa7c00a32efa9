"""The SMS player cuts long texts the way phones do; the try-it page texts a proxy number."""

from __future__ import annotations

import pytest

from harness.smsplayer import sms_parts
from proxy.models import Message
from proxy.services import conversation_create
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB, CAROL
from tests.console import staff_user

URL = "/sandbox/sms"


def test_a_short_text_is_one_part_a_long_one_is_cut_as_phones_cut():
    assert sms_parts("hello") == ["hello"]
    assert sms_parts("x" * 160) == ["x" * 160]
    assert [len(p) for p in sms_parts("x" * 161)] == [153, 8]
    assert [len(p) for p in sms_parts("é" + "ü" * 69)] == [70]  # GSM characters
    assert [len(p) for p in sms_parts("到" * 71)] == [67, 4]  # unicode
    assert "".join(sms_parts("到" * 200)) == "到" * 200


@pytest.fixture
def staff_client(client, db):
    # Playing texts writes messages and sends callbacks: a pool administrator's page (issue 18).
    client.force_login(staff_user("Administrators"))
    return client


def test_staff_without_the_sandbox_permission_are_refused(client, db):
    client.force_login(staff_user("Operators"))
    assert client.post(URL, {"text": "hi"}).status_code == 403


@pytest.fixture
def conversation(db, service, pool):
    return conversation_create(service=service, participants=[{"number": ALICE}, {"number": BOB}], notify=False)


# Committed for real: the relay goes out when the webhook's transaction commits, inside the page's request.
@pytest.mark.django_db(transaction=True)
def test_a_participant_texts_and_the_page_shows_the_relay_masked(staff_client, conversation, settings):
    settings.VONAGE_SIGNATURE_SECRET = "try-it-sms-secret"
    alice = conversation.participants.get(real_number=ALICE)
    bob = conversation.participants.get(real_number=BOB)
    response = staff_client.post(URL, {"participant": alice.pk, "text": "At the gate, blue car.", "receipts": "on"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "every webhook accepted" in html
    assert f"{bob.proxy_number_id} → 1201****102" in html and "At the gate, blue car." in html
    assert ALICE not in html and BOB not in html
    assert SandboxMessage.objects.get().to_number == BOB
    assert Message.objects.get().status == "delivered"  # the receipt came back


def test_a_stranger_texting_shows_nothing_relayed(staff_client, conversation, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    alice = conversation.participants.get(real_number=ALICE)
    response = staff_client.post(URL, {"sender": "+" + CAROL, "proxy_number": alice.proxy_number_id, "text": "hi"})
    html = response.content.decode()
    assert "Nothing: the text was kept and not relayed" in html
    assert CAROL not in html
    assert not SandboxMessage.objects.exists()


def test_the_form_needs_a_sender_and_a_proxy_number(staff_client, conversation):
    response = staff_client.post(URL, {"text": "hi"})
    assert "Pick a participant, or give a sender and a proxy number." in response.content.decode()
    assert not Message.objects.exists()


def test_the_sms_form_is_gone_with_vonage_configured(staff_client, settings):
    settings.VONAGE_PROVIDER = "vonage"
    assert staff_client.post(URL, {"text": "hi"}).status_code == 404
