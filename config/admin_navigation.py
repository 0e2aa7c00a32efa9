"""The staff console's sidebar (django-unfold's SIDEBAR navigation setting points here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.urls import reverse_lazy


def _perm(codename: str) -> Callable[[HttpRequest], bool]:
    return lambda request: request.user.has_perm(codename)


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    """The console's sidebar, in the order staff work: watch, provision, look up, configure."""

    def item(title: str, icon: str, url: str, perm: str | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"title": title, "icon": icon, "link": reverse_lazy(url)}
        if perm:
            entry["permission"] = _perm(perm)
        return entry

    return [
        {
            "title": "Console",
            "items": [
                item("Pool health", "monitor_heart", "pool-health"),
                item("Home", "home", "admin:index"),
            ],
        },
        {
            "title": "Conversations",
            "separator": True,
            "items": [
                item("Conversations", "forum", "admin:proxy_conversation_changelist", "proxy.view_conversation"),
                item("Calls", "call", "admin:proxy_call_changelist", "proxy.view_call"),
                item("PIN calls", "pin", "admin:proxy_pincall_changelist", "proxy.view_pincall"),
                item("Recordings", "mic", "admin:proxy_recording_changelist", "proxy.view_recording"),
                item("Transcripts", "subtitles", "admin:proxy_transcript_changelist", "proxy.view_transcript"),
                item("SMS notifications", "sms", "admin:proxy_notification_changelist", "proxy.view_notification"),
                item("Texts", "chat", "admin:proxy_message_changelist", "proxy.view_message"),
                item("Opt-outs", "block", "admin:proxy_messagecontact_changelist", "proxy.view_messagecontact"),
                item(
                    "Marketplace callbacks",
                    "webhook",
                    "admin:proxy_callbackdelivery_changelist",
                    "proxy.view_callbackdelivery",
                ),
                item("Calls hung up", "call_end", "admin:proxy_callhangup_changelist", "proxy.view_callhangup"),
            ],
        },
        {
            "title": "Numbers",
            "separator": True,
            "items": [
                item("Pool numbers", "dialpad", "admin:numbers_virtualnumber_changelist", "numbers.view_virtualnumber"),
                item(
                    "Buy numbers", "add_shopping_cart", "admin:numbers_virtualnumber_buy", "numbers.add_virtualnumber"
                ),
                item(
                    "Pool exhaustions (409)",
                    "warning",
                    "admin:numbers_poolexhaustion_changelist",
                    "numbers.view_poolexhaustion",
                ),
                item("Number checks", "fact_check", "admin:numbers_numbercheck_changelist", "numbers.view_numbercheck"),
            ],
        },
        {
            "title": "Services",
            "separator": True,
            "items": [
                item("Services", "storefront", "admin:proxy_service_changelist", "proxy.view_service"),
                item("API keys", "key", "admin:proxy_apikey_changelist", "proxy.view_apikey"),
            ],
        },
        {
            "title": "Staff",
            "separator": True,
            "items": [
                item("Users", "person", "admin:auth_user_changelist", "auth.view_user"),
                item("Roles", "group", "admin:auth_group_changelist", "auth.view_group"),
                item("Admin log", "history", "admin:admin_logentry_changelist", "admin.view_logentry"),
            ],
        },
    ]
