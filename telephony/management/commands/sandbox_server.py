"""manage.py sandbox_server: serve the sandbox's Vonage REST API over HTTPS for the real SDK."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from telephony.sandbox.server import serve_sandbox


class Command(BaseCommand):
    help = (
        "Serve the sandbox's Vonage REST endpoints over HTTPS on 127.0.0.1 (throwaway test CA), "
        "so the official SDK can be aimed at it. Prints the environment to set; stops on Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=0, help="Port to listen on (default: a free one).")
        parser.add_argument(
            "--ca-file",
            default=str(settings.VAR_DIR / "sandbox-ca.pem"),
            help="Where to write the test CA certificate (for REQUESTS_CA_BUNDLE).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with serve_sandbox(port=options["port"], ca_file=options["ca_file"]) as server:
            self.stdout.write("Sandbox Vonage API at " + server.base_url)
            self.stdout.write("Aim the product at it with:")
            self.stdout.write(
                f"  export VONAGE_PROVIDER=vonage VONAGE_API_HOST={server.host} VONAGE_REST_HOST={server.host}"
            )
            self.stdout.write(f"  export REQUESTS_CA_BUNDLE={server.ca_path}")
            self.stdout.write(
                "  (plus any VONAGE_API_KEY/SECRET and VONAGE_APPLICATION_ID/PRIVATE_KEY: the sandbox accepts all)"
            )
            try:
                self.stdout.flush()
                threading.Event().wait()
            except KeyboardInterrupt:
                self.stdout.write("Stopped.")
