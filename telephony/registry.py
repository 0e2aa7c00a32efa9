"""Which provider serves: Vonage when credentials are configured, else the sandbox.

``VONAGE_PROVIDER`` ("vonage" or "sandbox") forces the choice. Credentials means the
application id with its private key (Voice) or the API key with its secret (SMS,
Number Insight, Numbers); with only one pair the other APIs fail with a clear
permanent error, and ``manage.py check --deploy`` warns about it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from telephony.provider import Provider


def vonage_configured() -> bool:
    has_app = bool(settings.VONAGE_APPLICATION_ID and settings.VONAGE_PRIVATE_KEY)
    has_key = bool(settings.VONAGE_API_KEY and settings.VONAGE_API_SECRET)
    return has_app or has_key


def sandbox_chosen() -> bool:
    """Whether the sandbox plays Vonage: asked for, or no Vonage credentials and no choice."""
    choice = (settings.VONAGE_PROVIDER or "").lower()
    return choice == "sandbox" or (not choice and not vonage_configured())


def build_provider() -> Provider:
    choice = (settings.VONAGE_PROVIDER or "").lower()
    if choice not in ("", "vonage", "sandbox"):
        raise ImproperlyConfigured(f"VONAGE_PROVIDER must be 'vonage' or 'sandbox', not {choice!r}.")
    if not sandbox_chosen():
        from telephony.vonage_provider import VonageProvider

        return VonageProvider(
            api_key=settings.VONAGE_API_KEY,
            api_secret=settings.VONAGE_API_SECRET,
            application_id=settings.VONAGE_APPLICATION_ID,
            private_key=settings.VONAGE_PRIVATE_KEY,
            api_host=settings.VONAGE_API_HOST,
            rest_host=settings.VONAGE_REST_HOST,
            timeout=settings.VONAGE_HTTP_TIMEOUT,
        )
    from telephony.sandbox.provider import SandboxProvider

    return SandboxProvider()


_provider: Provider | None = None


def get_provider() -> Provider:
    """The configured provider, built once per process (see ``build_provider``)."""
    global _provider
    if _provider is None:
        _provider = build_provider()
    return _provider


def provider_forget_on_change(*, setting: str, **kwargs: object) -> None:
    """``setting_changed`` receiver: a changed VONAGE_* setting builds the provider anew."""
    global _provider
    if setting.startswith("VONAGE_"):
        _provider = None
