"""Deploy checks: a live deployment needs Vonage credentials and webhook signatures."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def vonage_deploy_check(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings = []
    if not settings.VONAGE_SIGNATURE_SECRET:
        warnings.append(
            Warning(
                "VONAGE_SIGNATURE_SECRET is not set: webhooks are accepted without checking that Vonage sent them.",
                hint="Set it to the signature secret of your Vonage account (Dashboard > Settings).",
                id="telephony.W001",
            )
        )
    if not (settings.VONAGE_APPLICATION_ID and settings.VONAGE_PRIVATE_KEY):
        warnings.append(
            Warning(
                "VONAGE_APPLICATION_ID / VONAGE_PRIVATE_KEY are not set: the sandbox controls calls, not Vonage.",
                hint="Create a Voice application in the Vonage dashboard and give its id and private key.",
                id="telephony.W002",
            )
        )
    if not (settings.VONAGE_API_KEY and settings.VONAGE_API_SECRET):
        warnings.append(
            Warning(
                "VONAGE_API_KEY / VONAGE_API_SECRET are not set: SMS, Number Insight and numbers go to the sandbox.",
                hint="Give the API key and secret of your Vonage account.",
                id="telephony.W003",
            )
        )
    return warnings
