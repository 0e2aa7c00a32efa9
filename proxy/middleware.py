from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class RequestSizeLimitMiddleware:
    """Answer 413 to a request body over ``MAX_REQUEST_BODY_BYTES`` before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return JsonResponse(
                {
                    "code": "request_too_large",
                    "detail": f"Request bodies are limited to {settings.MAX_REQUEST_BODY_BYTES} bytes.",
                },
                status=413,
            )
        return self.get_response(request)
