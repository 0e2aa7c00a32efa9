"""One log line and the metrics per request, under a request id.

The id is the caller's ``X-Request-ID`` when it is a sane token (a load balancer's or
the marketplace's), else a new one; it goes back in the response's ``X-Request-ID``,
onto every log line of the request (``config.logs``) and into any Celery task it queues.
The line names the route pattern (``webhooks/answer``), never the URL: webhook query
strings carry real numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config.logs import REQUEST_ID, WEBHOOK_OUTCOME, request_id_from
from config.metrics import observe_request

logger = logging.getLogger("request")

# Probes hit these every few seconds: their lines are DEBUG.
_QUIET_ROUTES = {"health", "health/live", "health/ready", "metrics"}


class RequestLogMiddleware:
    """First in MIDDLEWARE, so its duration covers everything the product does."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        id_token = REQUEST_ID.set(request_id)
        outcome_token = WEBHOOK_OUTCOME.set("")
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            match = request.resolver_match
            route = match.route if match is not None else "-"
            response["X-Request-ID"] = request_id
            outcome = WEBHOOK_OUTCOME.get()
            observe_request(
                route=route, method=request.method or "", status=response.status_code, outcome=outcome, seconds=seconds
            )
            logger.log(
                logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                "%s %s %s %.1fms",
                request.method,
                route,
                response.status_code,
                seconds * 1000,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 2),
                    **({"outcome": outcome} if outcome else {}),
                },
            )
            return response
        finally:
            WEBHOOK_OUTCOME.reset(outcome_token)
            REQUEST_ID.reset(id_token)
