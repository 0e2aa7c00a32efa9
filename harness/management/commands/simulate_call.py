"""manage.py simulate_call: the sandbox plays Vonage's side of one call against a running server."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from harness.callplayer import OUTCOMES, WITHHELD_CALLER, HttpTransport, PlayResult, call_play
from proxy.phone import InvalidNumber, normalize
from telephony.models import SandboxCall, SandboxRecording

WITHHELD = {"withheld", "unknown", "anonymous"}


class Command(BaseCommand):
    help = (
        "Play Vonage's side of one inbound call against a running server: signed answer webhook, "
        "the NCCO it returns, the event webhooks. Exits 0 once the last event was accepted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="caller",
            required=True,
            help='The caller\'s real number, or "withheld" for a withheld caller ID.',
        )
        parser.add_argument("--to", dest="proxy_number", required=True, help="The proxy number dialled.")
        parser.add_argument("--url", default="", help="Base URL of the server (default: PUBLIC_URL).")
        parser.add_argument("--outcome", choices=OUTCOMES, default="answered", help="What the called party does.")
        parser.add_argument("--duration", type=int, default=30, help="Seconds the answered call lasts.")
        parser.add_argument(
            "--pin",
            dest="pins",
            action="append",
            default=[],
            metavar="DIGITS",
            help="What the caller keys in when asked for a PIN; repeat it for the next prompts (a wrong "
            "PIN, then the right one). Without it the caller presses nothing.",
        )
        parser.add_argument("--json", action="store_true", help="Print the webhooks sent as JSON after the transcript.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["duration"] < 0:
            raise CommandError("--duration must be zero or more seconds.")
        for keys in options["pins"]:
            if not keys or len(keys) > 20 or set(keys) - set("0123456789*#"):
                raise CommandError("--pin: give the keys pressed, 1 to 20 of 0-9, * and #.")
        withheld = options["caller"].strip().lower() in WITHHELD
        caller = WITHHELD_CALLER if withheld else _digits(options["caller"], "--from")
        proxy_number = _digits(options["proxy_number"], "--to")
        base = (options["url"] or settings.PUBLIC_URL).rstrip("/")
        self.stdout.write(f"Playing Vonage against {base}")
        kwargs = {
            "transport": HttpTransport(base),
            "caller": caller,
            "proxy_number": proxy_number,
            "outcome": options["outcome"],
            "duration": options["duration"],
            "secret": settings.VONAGE_SIGNATURE_SECRET,
            "pins": options["pins"],
        }
        result = call_play(**kwargs, record_legs=_sandbox_tables_exist())
        self._print(result, as_json=options["json"])
        if not result.ok:
            raise CommandError(result.error, returncode=result.exit_code)

    def _print(self, result: PlayResult, *, as_json: bool) -> None:
        for line in result.transcript:
            self.stdout.write(line)
        if as_json:
            steps = [step.__dict__ for step in result.steps]
            self.stdout.write(json.dumps({"nccos": result.nccos, "webhooks": steps}, indent=2, default=str))
        if result.ok:
            self.stdout.write(self.style.SUCCESS(f"Call played: {len(result.steps)} webhooks accepted."))


def _sandbox_tables_exist() -> bool:
    """Whether the legs can be recorded in the sandbox's tables (not in an unmigrated or
    unreachable database). Decided before playing: retrying after a failed write would
    send the answer webhook of a call that never went on, then play a second call."""
    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError:
        return False
    return {SandboxCall._meta.db_table, SandboxRecording._meta.db_table} <= tables


def _digits(raw: str, option: str) -> str:
    try:
        return normalize(raw, default_country=settings.PROXY_DEFAULT_COUNTRY)
    except InvalidNumber as error:
        raise CommandError(f"{option}: {error}") from error
