from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Telephony provider"

    def ready(self) -> None:
        from telephony import checks  # noqa: F401 - registers the deploy checks
