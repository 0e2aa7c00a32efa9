"""Per-service API rate limit: ``Service.rate_limit`` requests per second (0 = no limit).

Fails open: with Redis down or silent, requests go through (DESIGN.md, "Redis is off the
call path").
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.redis_guard import REDIS
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
        if not REDIS.allows():
            return True  # fail open: Redis failed moments ago
        now = self.timer()
        slot = int(now // self.window)
        try:
            count = self._count(f"throttle:service:{service.pk}:{slot}")
        except Exception as exc:
            # The limit protects the product; Redis being away must not turn every
            # request into a 500. Let it through, and skip Redis for a few seconds.
            REDIS.failed(exc)
            return True
        REDIS.succeeded()
        if count <= service.rate_limit:
            return True
        self.retry_after = (slot + 1) * self.window - now
        return False

    def _count(self, key: str) -> int:
        """Add one to the window's counter and return it."""
        # Two windows' lifetime: a slow clock elsewhere still finds the counter.
        timeout = 2 * self.window + 1
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            # One round trip (Django's add and incr would take three): count, and make
            # sure the counter expires whoever created it.
            name = backend.make_and_validate_key(key)
            pipeline = backend._cache.get_client(name, write=True).pipeline(transaction=False)
            pipeline.incr(name)
            pipeline.expire(name, timeout)
            return int(pipeline.execute()[0])
        cache.add(key, 0, timeout=timeout)
        try:
            return int(cache.incr(key))
        except ValueError:  # evicted between add and incr
            cache.add(key, 1, timeout=timeout)
            return 1

    def wait(self) -> float | None:
        # DRF rounds up; Retry-After is never 0 while the window is closed.
        return None if self.retry_after is None else max(1, math.ceil(self.retry_after))
