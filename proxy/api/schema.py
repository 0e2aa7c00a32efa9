"""OpenAPI pieces shared by the API views (drf-spectacular)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework.exceptions import APIException

from proxy.api.exceptions import PayloadTooLarge
from proxy.api.serializers import DetailSerializer, ErrorSerializer
from proxy.errors import ConversationEnded, DomainError, IdempotencyKeyReused, PoolExhausted, RequestInProgress


class ServiceKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "proxy.authentication.ServiceKeyAuthentication"
    name = "serviceKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A service API key (create_api_key)."}


def _example(error: type[APIException] | type[DomainError]) -> OpenApiExample:
    """The body the API answers with for ``error``, taken from the exception itself."""
    code = str(error.code if issubclass(error, DomainError) else error.default_code)
    return OpenApiExample(code, value={"code": code, "detail": str(error.default_detail)})


def _coded(description: str, error: type[APIException] | type[DomainError]) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description, examples=[_example(error)])


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes retries safe for 24 hours: the same key and body replay the first 201 "
        "(with `Idempotent-Replayed: true`); the same key with another body gets 422."
    ),
)

BAD_REQUEST = OpenApiResponse(
    description="Invalid input. DRF field errors, nested for participants: "
    '`{"participants": [{"number": ["..."]}, {}]}`; malformed JSON gives `{"detail": "..."}`.'
)
UNAUTHORIZED = OpenApiResponse(DetailSerializer, description="Missing, unknown or revoked API key.")
NOT_FOUND = OpenApiResponse(DetailSerializer, description="No such conversation in this service.")
TOO_LARGE = _coded("Request body over 64 KiB.", PayloadTooLarge)
THROTTLED = OpenApiResponse(DetailSerializer, description="Over the service's rate; see `Retry-After`.")
POOL_EXHAUSTED_OR_IN_PROGRESS = OpenApiResponse(
    ErrorSerializer,
    description="`pool_exhausted`: no proxy number is free; "
    "`request_in_progress`: the first request with this Idempotency-Key is still running.",
    examples=[_example(PoolExhausted), _example(RequestInProgress)],
)
KEY_REUSED = _coded("The Idempotency-Key was used with a different body.", IdempotencyKeyReused)
ENDED = _coded("The conversation has ended.", ConversationEnded)
