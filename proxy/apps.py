from django.apps import AppConfig
from django.conf import settings


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Masked calling"

    def ready(self) -> None:
        # The deploy checks register, and the outbox and personal-data kinds declare
        # themselves, on import.
        # Every process (web, worker, beat, commands) counts its tasks and reports its errors.
        import config.metrics  # noqa: F401
        from config.sentry import sentry_init
        from proxy import (  # noqa: F401
            callbacks,
            checks,
            hangups,
            message_outbox,
            messaging,
            notifications,
            recordings,
            retention,
            validation,
        )

        sentry_init(dsn=settings.SENTRY_DSN, environment=settings.SENTRY_ENVIRONMENT, release=settings.SENTRY_RELEASE)
