"""Point the Vonage application's voice webhooks at PUBLIC_URL: answer, event and fallback, all POST."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telephony.provider import ProviderError
from virtual_numbers.services import application_webhooks_configure


class Command(BaseCommand):
    help = (
        "Set the Vonage application's answer, event and fallback URLs to PUBLIC_URL's webhooks, as POST "
        "(the signature's payload_hash then covers the routed numbers), with signed callbacks on."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            urls = application_webhooks_configure()
        except ProviderError as exc:
            raise CommandError(f"Vonage refused: {exc}") from exc
        self.stdout.write(f"answer    {urls.answer_method} {urls.answer_url}")
        self.stdout.write(f"event     {urls.event_method} {urls.event_url}")
        self.stdout.write(f"fallback  {urls.fallback_method} {urls.fallback_url}")
