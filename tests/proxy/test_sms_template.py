"""The SMS template (issue 18): validated when saved, rendered without str.format's powers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from proxy.notifications import notification_text_render
from proxy.sms_template import sms_template_errors, sms_template_render
from tests.conftest import ALICE, BOB
from tests.factories import ConversationFactory, ParticipantFactory, ServiceFactory

VALUES = {"service": "Acme", "name": "Alice", "counterpart": "Bob", "proxy_number": "+1 201-555-0200"}


@pytest.mark.parametrize(
    "template",
    [
        "{counterpart.name}",
        "{service[x]}",
        "{service.__class__}",
        "{name:>100000000}",
        "{name!r}",
        "{0}",
        "{}",
        "{oops}",
        "Broken {counterpart",
        "Broken counterpart}",
        "{name:{proxy_number}}",
    ],
)
def test_templates_that_could_fail_or_leak_are_refused_when_saved(template):
    assert sms_template_errors(template)


@pytest.mark.parametrize(
    "template",
    ["{service}: to reach {counterpart}, call {proxy_number}.", "Hi {name}", "Braces {{like this}}", "No placeholder"],
)
def test_good_templates_pass(template):
    assert sms_template_errors(template) == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{counterpart.name} {proxy_number}", "{counterpart.name} +1 201-555-0200"),
        ("{service[x]}", "{service[x]}"),
        ("{name:>100000000}", "{name:>100000000}"),
        ("{name!r}", "{name!r}"),
        ("{{literal}} {name}", "{literal} Alice"),
        ("{0}{}", "{0}{}"),
    ],
)
def test_rendering_substitutes_plain_placeholders_only(template, expected):
    assert sms_template_render(template, VALUES) == expected


def test_an_unbalanced_template_renders_as_none():
    assert sms_template_render("Broken {counterpart", VALUES) is None


@pytest.mark.django_db
@pytest.mark.parametrize("template", ["{counterpart.name}", "{service[x]}", "{name:>100000000}", "{name!s:>9}"])
def test_a_hostile_stored_template_never_breaks_the_sms(template):
    service = ServiceFactory(name="Acme", sms_template=template + " call {proxy_number}")
    conversation = ConversationFactory(service=service)
    alice = ParticipantFactory(conversation=conversation, real_number=ALICE, name="Alice", position=0)
    bob = ParticipantFactory(conversation=conversation, real_number=BOB, name="Bob", position=1)
    text = notification_text_render(service=service, recipient=alice, counterpart=bob)
    assert len(text) < 200
    assert "call +1" in text


@pytest.mark.django_db
def test_the_console_refuses_a_bad_template_naming_the_field(admin_client, service):
    url = reverse("admin:proxy_service_change", args=[service.pk])
    data = {
        "name": "Acme Rides",
        "slug": "acme",
        "is_active": "on",
        "default_country": "US",
        "rate_limit": 50,
        "default_ttl": 600,
        "cooldown": 0,
        "recording_policy": "always",
        "connect_timeout": 30,
        "call_time_limit": 3600,
        "language": "en-US",
        "voice_style": 0,
        "record_notice": "Recorded.",
        "retention_days": "30",
        "message_limit_conversation": 100,
        "message_limit_service": 6000,
        "pin_mode": "off",
        "pin_prompt_text": "Your PIN, please.",
        "pin_invalid_text": "Wrong PIN.",
        "pin_no_input_text": "No PIN.",
        "pin_goodbye_text": "Bye.",
        "not_allowed_text": "Not allowed.",
        "intercept_on_error": "allow",
        "unknown_caller_text": "Unknown.",
        "ended_text": "Ended.",
        "unavailable_text": "Unavailable.",
        "sms_template": "{counterpart.name} on {proxy_number}",
        "callback_url": "",
        "callback_secret": "",
        "api_keys-TOTAL_FORMS": 0,
        "api_keys-INITIAL_FORMS": 0,
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "sms_template" in response.context["adminform"].form.errors
    service.refresh_from_db()
    assert "counterpart.name" not in service.sms_template
