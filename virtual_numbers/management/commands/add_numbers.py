"""add_numbers --service SLUG NUMBER...: register rented numbers in a service's pool."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from proxy import phone
from proxy.models import Service
from virtual_numbers.models import VirtualNumber
from virtual_numbers.services import NumberError, numbers_add


class Command(BaseCommand):
    help = (
        "Register numbers the Vonage account already rents in a service's pool. "
        "Numbers already in that pool are left as they are; a number in another pool is an error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("numbers", nargs="+", metavar="NUMBER", help="E.164 ('+12015550123') or digits.")
        parser.add_argument("--service", required=True, metavar="SLUG")
        parser.add_argument(
            "--type", dest="number_type", choices=VirtualNumber.Type.values, default=VirtualNumber.Type.MOBILE
        )
        parser.add_argument("--no-sms", action="store_true", help="The numbers cannot send SMS.")

    def handle(self, *args: Any, numbers: list[str], service: str, number_type: str, no_sms: bool, **opts: Any) -> None:
        pool = Service.objects.filter(slug=service).first()
        if pool is None:
            raise CommandError(f"No service {service!r}; create it with create_api_key {service}.")

        wanted: dict[str, str] = {}
        problems: list[str] = []
        for raw in numbers:
            try:
                digits = phone.normalize(raw, default_country=pool.default_country)
            except phone.InvalidNumber as exc:
                problems.append(str(exc))
                continue
            wanted.setdefault(digits, phone.region_of(digits))
        if problems:
            raise CommandError("Nothing added. " + " ".join(problems))
        try:
            result = numbers_add(service=pool, numbers=wanted, number_type=number_type, sms=not no_sms)
        except NumberError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{result.added} added to {pool.slug!r}, {result.kept} already there.")
