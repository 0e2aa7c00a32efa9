"""API errors with a stable ``code`` for the ones clients branch on."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler


class PoolExhausted(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "pool_exhausted"
    default_detail = "No proxy number is free in this service's pool."


class ConversationEnded(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conversation_ended"
    default_detail = "This conversation has ended and cannot be changed."


class RequestInProgress(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "request_in_progress"
    default_detail = "A request with this Idempotency-Key is still being processed."


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request body."


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


_CODED = (PoolExhausted, ConversationEnded, RequestInProgress, IdempotencyKeyReused, PayloadTooLarge)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, _CODED):
        response.data = {"code": exc.default_code, "detail": str(exc.detail)}
    return response
