"""The API's edge: domain errors and oversized bodies become HTTP answers with a stable ``code``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from proxy.errors import (
    ConversationEnded,
    DomainError,
    IdempotencyKeyReused,
    InvalidInput,
    PoolExhausted,
    RequestInProgress,
)


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


# Every coded domain error and its HTTP status: the bodies are {"code", "detail"}.
STATUS_OF: dict[type[DomainError], int] = {
    PoolExhausted: status.HTTP_409_CONFLICT,
    ConversationEnded: status.HTTP_409_CONFLICT,
    RequestInProgress: status.HTTP_409_CONFLICT,
    IdempotencyKeyReused: status.HTTP_422_UNPROCESSABLE_ENTITY,
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, InvalidInput):
        exc = ValidationError(exc.errors)
    if isinstance(exc, DomainError) and type(exc) in STATUS_OF:
        set_rollback()
        return Response({"code": exc.code, "detail": exc.detail}, status=STATUS_OF[type(exc)])
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, PayloadTooLarge):
        response.data = {"code": exc.default_code, "detail": str(exc.detail)}
    return response
