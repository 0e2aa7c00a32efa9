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
