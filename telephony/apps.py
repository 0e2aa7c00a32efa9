from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Telephony provider"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from telephony import checks  # noqa: F401 - registers the deploy checks
        from telephony.registry import provider_forget_on_change

        setting_changed.connect(provider_forget_on_change, dispatch_uid="telephony-provider")
