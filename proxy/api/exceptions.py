"""The API's edge: domain errors and oversized bodies become HTTP answers with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
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


logger = logging.getLogger(__name__)

# The database went away under the request (a PostgreSQL restart, a failover): a clean,
# retryable answer, not a 500. The next request reconnects (CONN_HEALTH_CHECKS).
DATABASE_UNAVAILABLE_RETRY_AFTER = 1


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("API request failed: database unavailable (%s)", type(exc).__name__)
        unavailable = Response(
            {"code": "temporarily_unavailable", "detail": "The service is briefly unavailable; retry."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        unavailable["Retry-After"] = str(DATABASE_UNAVAILABLE_RETRY_AFTER)
        return unavailable
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
