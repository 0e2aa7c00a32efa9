"""create_api_key SERVICE_SLUG: issue an API key, creating the service if needed."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction

from proxy.api_keys import api_key_create
from proxy.models import Service


class Command(BaseCommand):
    help = "Issue an API key for a service (created if it does not exist). The key is printed alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("service_slug", metavar="SERVICE_SLUG")
        parser.add_argument("--name", default="", help="A label for the key, such as 'production'.")
        parser.add_argument("--service-name", default="", help="Name of the service when it is created.")

    def handle(self, *args: Any, service_slug: str, name: str, service_name: str, **options: Any) -> None:
        try:
            validate_slug(service_slug)
        except ValidationError as exc:
            raise CommandError(f"{service_slug!r} is not a valid slug: letters, digits, '-' and '_'.") from exc
        if len(name) > 100 or len(service_name) > 100:
            raise CommandError("--name and --service-name take at most 100 characters.")
        with transaction.atomic():
            service, created = Service.objects.get_or_create(
                slug=service_slug, defaults={"name": service_name or service_slug.replace("-", " ").title()}
            )
            row, key = api_key_create(service=service, name=name)
        if created:
            self.stdout.write(f"Created service {service.slug!r} ({service.name}).")
        if not service.is_active:
            self.stderr.write(f"Service {service.slug!r} is inactive: its keys are refused until it is activated.")
        self.stdout.write(f"API key {row.prefix}… for {service.slug!r}; it is shown once, store it now:")
        self.stdout.write(key)
