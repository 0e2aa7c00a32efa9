"""add_numbers --service SLUG NUMBER...: register rented numbers in a service's pool."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from proxy import phone
from proxy.models import Service
from virtual_numbers.models import VirtualNumber


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

        added = kept = 0
        with transaction.atomic():
            existing = {n.number: n for n in VirtualNumber.objects.select_for_update().filter(number__in=wanted)}
            foreign = [n for n in existing.values() if n.service_id not in (None, pool.pk)]
            if foreign:
                shown = ", ".join(f"+{phone.mask(n.number)}" for n in foreign)
                raise CommandError(f"Nothing added: {shown} already in another service's pool.")
            for digits, country in wanted.items():
                number = existing.get(digits)
                if number is not None and number.service_id == pool.pk and number.state != VirtualNumber.State.RELEASED:
                    kept += 1
                    continue
                if number is None:
                    number = VirtualNumber(number=digits)
                number.service = pool
                number.country = country
                number.number_type = number_type
                number.voice = True
                number.sms = not no_sms
                number.state = VirtualNumber.State.ACTIVE
                number.released_at = None
                number.save()
                added += 1
        self.stdout.write(f"{added} added to {pool.slug!r}, {kept} already there.")
