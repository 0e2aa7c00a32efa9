"""The console's texts: on the conversation page and their own list, numbers masked; retry of
failed relays (and relaying held ones); the opt-outs."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from proxy.messaging import number_opt_in
from proxy.models import Message
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB, CAROL
from tests.console import messages_of, staff_user
from tests.proxy.messages_helpers import alice_and_bob, text_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def texted(client, service, pool, settings, django_capture_on_commit_callbacks):
    """Alice's relayed text, Bob's STOP, and a stranger's text out of session."""
    settings.VONAGE_SIGNATURE_SECRET = ""
    conversation, alice, bob = alice_and_bob(service, pool)
    text_in(client, django_capture_on_commit_callbacks, sender=ALICE, to=alice.proxy_number_id, text="gate 4, blue car")
    text_in(client, django_capture_on_commit_callbacks, sender=BOB, to=bob.proxy_number_id, text="STOP")
    text_in(client, django_capture_on_commit_callbacks, sender=CAROL, to=alice.proxy_number_id, text="who's this?")
    return conversation


def test_the_conversation_page_shows_its_texts_with_numbers_masked(admin_client, texted):
    page = admin_client.get(reverse("admin:proxy_conversation_change", args=[texted.pk])).content.decode()
    assert "gate 4, blue car" in page and "Opt-out keyword (STOP)" in page
    assert "who&#x27;s this?" not in page  # not this conversation's
    assert "+12015550202" in page  # the pool number Bob got the text from
    for real in (ALICE, BOB):
        assert real not in page
    assert "1201****102" in page


def test_every_text_page_renders_without_a_real_number(admin_client, texted):
    urls = [reverse("admin:proxy_message_changelist"), reverse("admin:proxy_messagecontact_changelist")]
    urls += [reverse("admin:proxy_message_change", args=[pk]) for pk in Message.objects.values_list("pk", flat=True)]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        for real in (ALICE, BOB, CAROL):
            assert real not in page, f"{url} shows a real number whole"


def test_texts_are_found_by_a_number_typed_in_full(admin_client, texted):
    url = reverse("admin:proxy_message_changelist")
    page = admin_client.get(url, {"q": "+1 201 555 0103"}).content.decode()
    carols = Message.objects.get(from_number=CAROL)
    relay = Message.objects.get(kind="relay")
    assert reverse("admin:proxy_message_change", args=[carols.pk]) in page
    assert reverse("admin:proxy_message_change", args=[relay.pk]) not in page
    assert CAROL not in page


def test_the_opt_outs_list_the_numbers_that_texted_stop(admin_client, texted):
    page = admin_client.get(reverse("admin:proxy_messagecontact_changelist")).content.decode()
    assert "1201****102" in page and "Opted out" in page
    assert "1201****101" not in page  # Alice never opted out


def test_staff_relay_a_held_text(admin_client, texted, service, client, django_capture_on_commit_callbacks):
    service.message_limit_conversation = 1
    service.save()
    text_in(client, django_capture_on_commit_callbacks, sender=ALICE, to="12015550200", text="one too many")
    held = Message.objects.get(status="held")
    changelist = reverse("admin:proxy_message_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(changelist, {"action": "retry", "_selected_action": [held.pk]})
    held.refresh_from_db()
    # Bob opted out: the text is refused at the send, never relayed to him.
    assert (held.status, held.reason) == ("failed", "recipient_opted_out")
    assert messages_of(response) == ["Retrying 1 text."]
    assert LogEntry.objects.filter(action_flag=CHANGE, object_id=str(held.pk)).exists()
    assert not SandboxMessage.objects.filter(text="one too many").exists()


def test_staff_retry_a_failed_relay(admin_client, texted, service, django_capture_on_commit_callbacks):
    number_opt_in(service=service, real_number=BOB)
    relay = Message.objects.get(kind="relay")
    Message.objects.filter(pk=relay.pk).update(status="failed", last_error="Vonage SMS refused the message")
    kept = Message.objects.get(reason="out_of_session")
    changelist = reverse("admin:proxy_message_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(changelist, {"action": "retry", "_selected_action": [relay.pk, kept.pk]})
    relay.refresh_from_db()
    assert relay.status == "sent"
    assert SandboxMessage.objects.filter(text="gate 4, blue car").count() == 2
    assert messages_of(response) == [
        "Retrying 1 text. 1 left as they were (not failed or held, never meant to be sent, or its conversation ended)."
    ]


def test_operators_see_texts_but_cannot_retry(client, texted):
    client.force_login(staff_user("Operators"))
    changelist = reverse("admin:proxy_message_changelist")
    page = client.get(changelist)
    assert page.status_code == 200 and 'value="retry"' not in page.content.decode()
    assert client.get(reverse("admin:proxy_messagecontact_changelist")).status_code == 200
