"""Run the periodic jobs without Celery beat: every entry of the beat schedule.

For installs without Redis, where tasks run in-process and beat cannot run: call it from
cron, or leave it running with ``--every``. One list (``config.celery``'s beat schedule)
serves both, so the expiry sweep, outbox redrive and the purges of personal data run
whichever way the product is deployed.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from config.celery import app


class Command(BaseCommand):
    help = "Run every periodic job of the beat schedule once, or every N seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, default=0, help="Repeat every N seconds (default: run once).")

    def handle(self, *args: Any, every: float = 0, **options: Any) -> None:
        app.loader.import_default_modules()
        while True:
            results = []
            for name, entry in sorted(app.conf.beat_schedule.items()):
                outcome = app.tasks[entry["task"]].apply()
                results.append(f"{name}: {outcome.result if outcome.successful() else 'failed'}")
            self.stdout.write("; ".join(results))
            if not every:
                return
            time.sleep(every)
