"""Demo data for trying the product on one machine: a service, a key, a pool, a conversation."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from proxy.api_keys import api_key_create, api_key_revoke
from proxy.models import Conversation, Service
from proxy.phone import pretty
from proxy.services import conversation_create
from telephony.provider import ProviderError
from telephony.registry import get_provider, sandbox_chosen
from virtual_numbers.models import VirtualNumber
from virtual_numbers.services import number_buy_offer, number_search_offers

ALICE = "12015550101"
BOB = "12015550102"
POOL = {"US": 4, "GB": 2}


class Command(BaseCommand):
    help = "Create (or refresh) the demo service, its API key, a sandbox pool and a demo conversation."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=settings.PUBLIC_URL, help="Where the server will listen.")
        parser.add_argument(
            "--admin-password",
            default="",
            help="Password of the demo 'admin' user (default: 'admin' with DJANGO_DEBUG on, else a generated one).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Demo data buys numbers and makes a superuser: only ever where the sandbox plays Vonage.
        if not sandbox_chosen():
            raise CommandError("seed_demo runs only while the sandbox plays Vonage (VONAGE_PROVIDER=sandbox).")
        password = options["admin_password"] or ("admin" if settings.DEBUG else secrets.token_urlsafe(16))
        service, _ = Service.objects.get_or_create(
            slug="demo", defaults={"name": "Demo Marketplace", "default_country": "US"}
        )
        for old in service.api_keys.filter(name="demo", revoked_at__isnull=True):
            api_key_revoke(api_key=old)
        _, key = api_key_create(service=service, name="demo")
        self._pool(service)
        conversation = self._conversation(service)
        user_model = get_user_model()
        login = "user admin / its password is unchanged"
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", password)
            login = f"user admin / password {password}"
        self._guide(options["url"], key, conversation, login)

    def _pool(self, service: Service) -> None:
        provider = get_provider()
        for country, wanted in POOL.items():
            have = VirtualNumber.objects.filter(
                service=service, country=country, state=VirtualNumber.State.ACTIVE
            ).count()
            if have >= wanted:
                continue
            try:
                # Offers already in a pool are left out: buying one would be refused.
                offers = number_search_offers(
                    country=country, features=("VOICE", "SMS"), size=wanted * 2, provider=provider
                )
                for offer in offers[: wanted - have]:
                    number_buy_offer(offer=offer, service=service, provider=provider)
            except ProviderError as exc:
                raise CommandError(f"Could not rent demo numbers from {provider.name}: {exc}") from exc

    def _conversation(self, service: Service) -> Conversation:
        existing = (
            Conversation.objects.filter(service=service, external_id="demo-order-1", status="open")
            .order_by("-created_at")
            .first()
        )
        if existing and existing.is_live:
            return existing
        return conversation_create(
            service=service,
            participants=[{"number": ALICE, "name": "Alice (rider)"}, {"number": BOB, "name": "Bob (driver)"}],
            external_id="demo-order-1",
            ttl=7 * 24 * 3600,
        )

    def _guide(self, url: str, key: str, conversation: Conversation, login: str) -> None:
        alice = conversation.participants.get(real_number=ALICE)
        lines = [
            "",
            "Masked calling is ready (Vonage sandbox, no real calls are made).",
            "",
            f"  Admin console      {url}/admin/   ({login})",
            f"  Pool health        {url}/admin/pool-health/",
            f"  Try a call         {url}/sandbox/",
            f"  API docs           {url}/api/docs/",
            f"  Health             {url}/health",
            "",
            f"Demo conversation {conversation.pk}: Alice {pretty(ALICE)} and Bob {pretty(BOB)}.",
            f"Alice calls {pretty(alice.proxy_number_id)} to reach Bob. Simulate it (in another terminal):",
            "  DJANGO_DEBUG=1 .venv/bin/python manage.py simulate_call"
            f" --from {ALICE} --to {alice.proxy_number_id} --url {url}",
            "",
            "Open a conversation over the API:",
            f"  curl -s -X POST {url}/api/v1/conversations -H 'Authorization: Bearer {key}' \\",
            "       -H 'Content-Type: application/json' \\",
            '       -d \'{"participants": [{"number": "+1 201 555 0103"}, {"number": "+1 201 555 0104"}]}\'',
            "",
            "API key of the demo service (shown once; the next run issues a new one):",
            key,
        ]
        self.stdout.write("\n".join(lines))
