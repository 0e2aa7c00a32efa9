"""Optional error reporting to Sentry (``SENTRY_DSN``), with real numbers scrubbed first.

Nothing is sent unless ``SENTRY_DSN`` is set. Before an event or breadcrumb leaves the
process, every string in it has its runs of eight or more digits masked (``+447700900123``
→ ``**********123``), query strings and cookies are dropped (webhook query strings carry
real numbers), and default PII (user IPs, headers' values) is never attached.
"""

from __future__ import annotations

from typing import Any

from config.logs import mask_digits

_DROPPED_REQUEST_FIELDS = ("query_string", "cookies", "data", "env")


def scrub(value: Any) -> Any:
    """``value`` with every string's digit runs masked, recursively through dicts, lists and tuples."""
    if isinstance(value, str):
        return mask_digits(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(item) for item in value)
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    request = event.get("request")
    if isinstance(request, dict):
        for field in _DROPPED_REQUEST_FIELDS:
            request.pop(field, None)
    return scrub(event)


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return scrub(crumb)


def sentry_init(*, dsn: str, environment: str, release: str) -> bool:
    """Start the SDK when a DSN is configured; True when it did."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        send_default_pii=False,
        # Local variables in stack frames would hold real numbers beyond the scrubber's reach.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=before_send,  # type: ignore[arg-type]
        before_breadcrumb=before_breadcrumb,  # type: ignore[arg-type]
        integrations=[DjangoIntegration(), CeleryIntegration()],
        traces_sample_rate=0.0,
    )
    return True
