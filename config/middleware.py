"""One log line and the metrics per request, under a request id; the short way for webhooks.

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
from typing import cast

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import ResolverMatch, URLResolver, get_resolver, get_urlconf

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


# Routes with path converters would each add an entry: the cache stops growing here.
_RESOLVED_PATHS_KEPT = 64


class BrowserlessRoutesMiddleware:
    """Serve the routes only Vonage calls without the browser middleware below this one.

    Sessions, CSRF, authentication, messages, static files, clickjacking and security
    headers, django-axes: none of them has anything to do with a signed machine-to-machine
    request, and passing through them was a fifth of the answer webhook's CPU (issue 17,
    bench/RESULTS.md). What stays for every request sits above this one in MIDDLEWARE:
    trusted proxies, the request line and metrics, the body size limit.

    A path under ``BROWSERLESS_PATH_PREFIXES`` is resolved and its view called here, the
    way Django's handler would (an exception becomes the same error response and the same
    ``got_request_exception`` signal). Two cases take the whole chain instead: a plain-HTTP
    request while ``SECURE_SSL_REDIRECT`` is on (SecurityMiddleware redirects it, as before),
    and any database with ``ATOMIC_REQUESTS`` (the handler wraps views in a transaction).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefixes = tuple(settings.BROWSERLESS_PATH_PREFIXES)
        if any(connections.settings[alias].get("ATOMIC_REQUESTS") for alias in connections):
            self.prefixes = ()
        self.serve = convert_exception_to_response(self._view_response)
        # Resolved paths, per URLconf: a handful of fixed webhook routes, each resolved
        # once, not through every pattern on every request (a twentieth of the answer's CPU).
        self._matches: dict[tuple[URLResolver, str], ResolverMatch] = {}

    def _resolve(self, path: str) -> ResolverMatch:
        resolver = get_resolver(get_urlconf())
        match = self._matches.get((resolver, path))
        if match is None:
            match = resolver.resolve(path)  # Resolver404 is an Http404: a 404
            if len(self._matches) < _RESOLVED_PATHS_KEPT:
                self._matches[(resolver, path)] = match
        return match

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            self.prefixes
            and request.path_info.startswith(self.prefixes)
            and not (settings.SECURE_SSL_REDIRECT and not request.is_secure())
        ):
            return cast(HttpResponse, self.serve(request))
        return self.get_response(request)

    def _view_response(self, request: HttpRequest) -> HttpResponse:
        match = self._resolve(request.path_info)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if response is None:
            raise ValueError(f"The view {match.func.__module__}.{match.func.__qualname__} returned None.")
        return response
