"""The domain's own errors. Services raise these; the API maps them to HTTP at its edge
(``proxy.api.exceptions``), the admin and commands show their ``detail``."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the domain refuses. ``code`` is stable: clients branch on it."""

    code = "error"
    default_detail = "The request was refused."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class PoolExhausted(DomainError):
    code = "pool_exhausted"
    default_detail = "No proxy number is free in this service's pool."


class ConversationEnded(DomainError):
    code = "conversation_ended"
    default_detail = "This conversation has ended and cannot be changed."


class RequestInProgress(DomainError):
    code = "request_in_progress"
    default_detail = "A request with this Idempotency-Key is still being processed."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request body."


class InvalidInput(DomainError):
    """Input that breaks a domain rule. ``errors`` names each bad field, as API field errors
    do: ``{field: [messages]}``, nested (a list per item) for lists such as participants."""

    code = "invalid"
    default_detail = "Invalid input."

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__()
        self.errors = errors
