"""Run the periodic jobs (expiry sweep, outbox redrive) without Celery beat.

For installs without Redis, where tasks run in-process and beat cannot run: call it from
cron, or leave it running with ``--every``.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from proxy.tasks import conversations_expire, outbox_redrive


class Command(BaseCommand):
    help = "Expire due conversations and queue again every outbox row whose task was lost."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, default=0, help="Repeat every N seconds (default: run once).")

    def handle(self, *args: Any, every: float = 0, **options: Any) -> None:
        while True:
            expired = conversations_expire.apply().get()
            counts = outbox_redrive.apply().get()
            self.stdout.write(f"expired {expired}; redrive {counts}")
            if not every:
                return
            time.sleep(every)
