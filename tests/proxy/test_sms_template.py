"""The SMS template (issue 18): validated when saved, rendered without str.format's powers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from proxy.notifications import notification_text_render
from proxy.sms_template import sms_template_errors, sms_template_render
from tests.conftest import ALICE, BOB
from tests.console import service_form
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
    data = service_form(sms_template="{counterpart.name} on {proxy_number}")
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "sms_template" in response.context["adminform"].form.errors
    service.refresh_from_db()
    assert "counterpart.name" not in service.sms_template
