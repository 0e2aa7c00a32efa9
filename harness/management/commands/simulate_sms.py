"""manage.py simulate_sms: the sandbox plays Vonage's side of one inbound SMS against a running server."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from harness.callplayer import HttpTransport
from harness.smsplayer import SmsPlay, receipts_play, sms_play
from proxy.phone import InvalidNumber, mask, normalize
from telephony.models import SandboxMessage


class Command(BaseCommand):
    help = (
        "Text a proxy number as Vonage would deliver it (signed inbound SMS, in parts when long) to a "
        "running server; show what the sandbox relayed and deliver its receipts. Exits 0 once every "
        "webhook was accepted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="sender", required=True, help="The sender's real number.")
        parser.add_argument("--to", dest="proxy_number", required=True, help="The proxy number texted.")
        parser.add_argument("--text", required=True, help="What the sender writes.")
        parser.add_argument("--url", default="", help="Base URL of the server (default: PUBLIC_URL).")
        parser.add_argument(
            "--wait",
            type=float,
            default=5.0,
            help="Seconds to wait for the relay to reach the sandbox (a worker may send it); 0: do not wait.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sender = _digits(options["sender"], "--from")
        proxy_number = _digits(options["proxy_number"], "--to")
        base = (options["url"] or settings.PUBLIC_URL).rstrip("/")
        transport = HttpTransport(base)
        secret, method = settings.VONAGE_SIGNATURE_SECRET, settings.VONAGE_SIGNATURE_METHOD
        self.stdout.write(f"Texting {proxy_number} from {mask(sender)} through {base}")
        before = _last_sandbox_message()
        play = sms_play(transport, sender=sender, to=proxy_number, text=options["text"], secret=secret, method=method)
        self._print(play)
        if not play.ok:
            raise CommandError(play.error, returncode=play.exit_code)
        sent = _sent_since(before, wait=options["wait"])
        for message in sent:
            self.stdout.write(f"  sandbox sent {message.from_number} -> {mask(message.to_number)}: {message.text!r}")
        if before is not None and not sent:
            self.stdout.write("  nothing relayed (kept for audit: see the admin's texts)")
        receipts = receipts_play(transport, messages=sent, secret=secret, method=method)
        self._print(receipts)
        if not receipts.ok:
            raise CommandError(receipts.error, returncode=receipts.exit_code)
        accepted = len(play.steps) + len(receipts.steps)
        self.stdout.write(self.style.SUCCESS(f"SMS played: {accepted} webhook{'s' if accepted != 1 else ''} accepted."))

    def _print(self, play: SmsPlay) -> None:
        for step in play.steps:
            self.stdout.write(f"  POST {step.path} ({step.label}) -> {step.status}")


def _last_sandbox_message() -> int | None:
    """The newest sandbox SMS id, or None when this process cannot see the sandbox's table
    (another machine's server): then nothing is shown of the relay."""
    try:
        return SandboxMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    except DatabaseError:
        return None


def _sent_since(before: int | None, *, wait: float) -> list[SandboxMessage]:
    if before is None:
        return []
    deadline = time.monotonic() + wait
    while True:
        sent = list(SandboxMessage.objects.filter(pk__gt=before, part=1).order_by("pk"))
        if sent or time.monotonic() >= deadline:
            return sent
        time.sleep(0.2)


def _digits(raw: str, option: str) -> str:
    try:
        return normalize(raw, default_country=settings.PROXY_DEFAULT_COUNTRY)
    except InvalidNumber as error:
        raise CommandError(f"{option}: {error}") from error
