"""Keep Redis off the call path: after a failure, skip it for a few seconds.

Webhooks and the API use Redis for two things they can do without: the rate limit's
counter (it fails open) and publishing a task after commit (the outbox row waits for the
redrive). With short client timeouts a dead or silent Redis costs a request at most
about a second; a breaker per use makes it cost one request per ``COOLDOWN`` per process,
not every request. State is per process, on purpose: no shared store to ask.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("config.redis_guard")

COOLDOWN_SECONDS = 5.0


class Breaker:
    """Closed (use Redis) until a failure; then open for ``cooldown`` seconds, then try again."""

    def __init__(self, name: str, *, cooldown: float = COOLDOWN_SECONDS) -> None:
        self.name = name
        self.cooldown = cooldown
        self._open_until = 0.0
        self._lock = threading.Lock()

    def allows(self) -> bool:
        """True when Redis may be tried now."""
        return time.monotonic() >= self._open_until

    def failed(self, error: BaseException | None = None) -> None:
        """Redis failed: skip it for ``cooldown`` seconds (logged once per opening)."""
        with self._lock:
            was_closed = self._open_until == 0.0
            self._open_until = time.monotonic() + self.cooldown
        if was_closed:
            logger.warning(
                "Redis unavailable for %s (%s); skipping it for %.0f s at a time",
                self.name,
                type(error).__name__ if error else "error",
                self.cooldown,
            )

    def succeeded(self) -> None:
        if self._open_until:
            with self._lock:
                self._open_until = 0.0
            logger.info("Redis available again for %s", self.name)


# One for both uses: the cache and the broker are the same Redis (REDIS_URL), so a rate
# limit that found it dead spares the same request a publish that would wait too.
REDIS = Breaker("the rate limit and task queuing")
