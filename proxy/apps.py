from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Masked calling"

    def ready(self) -> None:
        # The deploy checks register, and the outbox kinds declare themselves, on import.
        from proxy import (  # noqa: F401
            callbacks,
            checks,
            hangups,
            notifications,
            recordings,
            validation,
        )
