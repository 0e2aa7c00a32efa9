from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from proxy.models import Service


class ServiceRateThrottle(SimpleRateThrottle):
    """Per-service request rate (``Service.rate_limit`` per second), shared through the cache."""

    scope = "service"

    def get_rate(self) -> str | None:
        return None  # decided per request in allow_request

    def allow_request(self, request: Request, view: Any) -> bool:
        service = request.auth
        if not isinstance(service, Service) or not service.rate_limit:
            return True
        self.num_requests, self.duration = service.rate_limit, 1
        self.rate = f"{service.rate_limit}/s"
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        service = request.auth
        return f"throttle:service:{service.pk}" if isinstance(service, Service) else None
