"""Deploy checks for what the product needs in production beyond Vonage credentials."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.caches, deploy=True)
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.REDIS_URL:
        return []
    return [
        Warning(
            "REDIS_URL is not set: Celery tasks run inside web requests, nothing retries them "
            "but `run_periodic`, and API rate limits are counted per process.",
            hint="Set REDIS_URL and run Celery workers and beat (docs/operations.md).",
            id="proxy.W001",
        )
    ]
