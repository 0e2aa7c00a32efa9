"""How a Vonage failure reads: permanent or worth a retry. Shared by both providers.

Retryable: throttling (SMS/Number Insight status 1, HTTP 429), Vonage's own trouble
(SMS status 5, Number Insight status 5, HTTP 5xx), timeouts and connection errors.
Everything else (bad parameters, credentials, barred numbers, no credit, 420
"method failed", unknown calls) fails the same way however often it is retried.
"""

from __future__ import annotations

from telephony.provider import ProviderError

SMS_RETRYABLE = {"1", "5"}
INSIGHT_RETRYABLE = {1, 5}


def sms_failure(status: str, text: str) -> ProviderError:
    return ProviderError(
        f"Vonage SMS refused the message: {text or 'status ' + status}",
        permanent=status not in SMS_RETRYABLE,
        code=f"sms-{status}",
    )


def insight_failure(status: int, message: str) -> ProviderError:
    return ProviderError(
        f"Number Insight failed: {message or 'status ' + str(status)}",
        permanent=status not in INSIGHT_RETRYABLE,
        code=f"ni-{status}",
    )


def http_failure(status: int, detail: str, *, what: str) -> ProviderError:
    retryable = status == 429 or status >= 500
    return ProviderError(f"{what}: HTTP {status} {detail}".strip(), permanent=not retryable, code=f"http-{status}")


def transport_failure(error: Exception, *, what: str) -> ProviderError:
    return ProviderError(f"{what}: {type(error).__name__}", permanent=False, code="transport")
