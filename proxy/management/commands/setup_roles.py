"""Create or refresh the staff roles (Django groups). Safe to run on every deploy.

Operators watch and look up: they read everything in the console and may close or
extend conversations, but neither play recordings nor read transcripts. Administrators
also run the pool (numbers), services, API keys and settings, and play recordings and
read transcripts. Permissions not listed are removed, so a rerun puts a role back as
defined here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

OPERATORS = "Operators"
ADMINISTRATORS = "Administrators"

_VIEW_ONLY = [
    "proxy.view_service",
    "proxy.view_apikey",
    "proxy.view_conversation",
    "proxy.view_participant",
    "proxy.view_call",
    "proxy.view_callevent",
    "proxy.view_recording",
    "proxy.view_transcript",
    "proxy.view_notification",
    "proxy.view_callbackdelivery",
    "proxy.view_message",
    "proxy.view_messagecontact",
    "proxy.view_pincall",
    "proxy.view_callhangup",
    "numbers.view_virtualnumber",
    "numbers.view_poolexhaustion",
    "numbers.view_numbercheck",
]

ROLES: dict[str, list[str]] = {
    OPERATORS: [*_VIEW_ONLY, "proxy.change_conversation"],
    ADMINISTRATORS: [
        *_VIEW_ONLY,
        "proxy.change_conversation",
        "proxy.add_service",
        "proxy.change_service",
        "proxy.add_apikey",
        "proxy.change_apikey",
        "numbers.add_virtualnumber",
        "numbers.change_virtualnumber",
        # the Retry actions of the SMS, callback, recording, transcript and message outboxes
        "proxy.change_notification",
        "proxy.change_callbackdelivery",
        "proxy.change_recording",
        "proxy.change_transcript",
        # recordings and transcripts are personal data: played and read by Administrators only
        "proxy.play_recording",
        # retry a failed text, relay a held one
        "proxy.change_message",
        "admin.view_logentry",
    ],
}


def _permissions(names: list[str]) -> list[Permission]:
    found = []
    for name in names:
        app_label, codename = name.split(".", 1)
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


def roles_setup() -> dict[str, Group]:
    """Create the groups and set their permissions exactly; returns them by name."""
    groups = {}
    with transaction.atomic():
        for name, perms in ROLES.items():
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.set(_permissions(perms))
            groups[name] = group
    return groups


class Command(BaseCommand):
    help = "Create or refresh the staff roles: Operators and Administrators."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, group in roles_setup().items():
            self.stdout.write(f"{name}: {group.permissions.count()} permissions")
