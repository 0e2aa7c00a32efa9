"""Helpers for the staff console's tests (the proxy and the pool admin)."""

from __future__ import annotations

import io

from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.core.management import call_command


def staff_user(role: str) -> User:
    call_command("setup_roles", stdout=io.StringIO())
    user = User.objects.create_user(username=role.lower(), password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def service_form(**changes: object) -> dict[str, object]:
    """Every field of the service page, filled in as staff would (Acme Rides), with ``changes``:
    one place to add a field the page gains."""
    data: dict[str, object] = {
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
        "unknown_caller_text": "Unknown.",
        "ended_text": "Ended.",
        "unavailable_text": "Unavailable.",
        "not_allowed_text": "Not allowed.",
        "sms_template": "Call {proxy_number}",
        "pin_mode": "off",
        "pin_prompt_text": "Your PIN, please.",
        "pin_invalid_text": "Wrong PIN.",
        "pin_no_input_text": "No PIN.",
        "pin_goodbye_text": "Bye.",
        "message_limit_conversation": 100,
        "message_limit_service": 6000,
        "callback_url": "",
        "callback_secret": "",
        "intercept_on_error": "allow",
        "api_keys-TOTAL_FORMS": 0,
        "api_keys-INITIAL_FORMS": 0,
    }
    data.update(changes)
    return data
