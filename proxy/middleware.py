from __future__ import annotations

import io
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse


def _too_large() -> JsonResponse:
    return JsonResponse(
        {
            "code": "request_too_large",
            "detail": f"Request bodies are limited to {settings.MAX_REQUEST_BODY_BYTES} bytes.",
        },
        status=413,
    )


class RequestSizeLimitMiddleware:
    """Answer 413 to a request body over ``MAX_REQUEST_BODY_BYTES`` before anything reads it.

    A chunked body has no Content-Length, and Django would read it as empty; it is read
    here up to the limit instead, and given a Content-Length when it fits.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.MAX_REQUEST_BODY_BYTES
        raw_length = request.META.get("CONTENT_LENGTH")
        if raw_length not in (None, ""):
            try:
                length = int(raw_length)
            except ValueError:
                return JsonResponse({"detail": "Invalid Content-Length."}, status=400)
            if length > limit:
                return _too_large()
        elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = self._read_chunked(request, limit)
            if body is None:
                return _too_large()
            request._stream = LimitedStream(io.BytesIO(body), len(body))  # type: ignore[attr-defined,assignment]
            request.META["CONTENT_LENGTH"] = str(len(body))
        return self.get_response(request)

    @staticmethod
    def _read_chunked(request: HttpRequest, limit: int) -> bytes | None:
        """The de-chunked body, or None when it is over ``limit``."""
        environ = getattr(request, "environ", None)
        # Under WSGI Django wraps the input in a zero-length stream; the server's own
        # reader (gunicorn de-chunks) is in the environ. Under ASGI the body is spooled.
        stream = environ["wsgi.input"] if environ and "wsgi.input" in environ else request._stream  # type: ignore[attr-defined]
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = stream.read(min(64 * 1024, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > limit else b"".join(chunks)
