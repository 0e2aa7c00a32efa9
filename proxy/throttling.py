"""Per-service API rate limit: ``Service.rate_limit`` requests per second (0 = no limit)."""

from __future__ import annotations

import math
import time
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from proxy.models import Service


class ServiceRateThrottle(BaseThrottle):
    """A fixed one-second window per service, counted in the shared cache.

    ``cache.incr`` is atomic in Redis, so every web process counts against one budget;
    a read-modify-write history (DRF's SimpleRateThrottle) loses counts under load.
    """

    window = 1
    timer = staticmethod(time.time)

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        service = request.auth
        if not isinstance(service, Service) or not service.rate_limit:
            return True
        now = self.timer()
        slot = int(now // self.window)
        key = f"throttle:service:{service.pk}:{slot}"
        # Two windows' lifetime: a slow clock elsewhere still finds the counter.
        cache.add(key, 0, timeout=2 * self.window + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.add(key, 1, timeout=2 * self.window + 1)
            count = 1
        if count <= service.rate_limit:
            return True
        self.retry_after = (slot + 1) * self.window - now
        return False

    def wait(self) -> float | None:
        # DRF rounds up; Retry-After is never 0 while the window is closed.
        return None if self.retry_after is None else max(1, math.ceil(self.retry_after))
