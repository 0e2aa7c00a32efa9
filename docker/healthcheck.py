"""Container health check: exit 0 when this container's web process answers ``/health/live`` with 200.

The image's ``HEALTHCHECK`` runs it in every container of the image, whatever process
the container runs; only a web container (gunicorn as process 1) is probed, others
pass here and bring their own check (compose.yaml pings the worker).
Standard library only (the slim image has no curl). The request names a host from
``DJANGO_ALLOWED_HOSTS`` (Django answers 400 to any other) and says it came over HTTPS
through the proxy, so ``DJANGO_SECURE_SSL_REDIRECT`` does not turn it into a redirect.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def allowed_host() -> str:
    """The first concrete host in ``DJANGO_ALLOWED_HOSTS`` (a leading dot dropped), else localhost."""
    for entry in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        host = entry.strip().lstrip(".")
        if host and "*" not in host:
            return host
    return "localhost"


def serves_http(cmdline: Path = Path("/proc/1/cmdline")) -> bool:
    """Whether process 1 is gunicorn (the entry point execs the Procfile's command)."""
    try:
        return b"gunicorn" in cmdline.read_bytes()
    except OSError:
        return True  # cannot tell: probe


def main() -> int:
    if not serves_http():
        return 0
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health/live"
    request = urllib.request.Request(url, headers={"Host": allowed_host(), "X-Forwarded-Proto": "https"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - a fixed http URL
            return 0 if response.status == 200 else 1
    except Exception as exc:
        print(f"health check failed: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
