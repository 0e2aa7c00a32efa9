"""``GET /metrics``: Prometheus text format, for a scraper holding ``METRICS_TOKEN``.

``Authorization: Bearer <METRICS_TOKEN>``; without the setting the endpoint does not
exist (404). Beside what the processes recorded (``config.metrics``), each scrape reads
the product's figures from the database: outbox depth, rows past due and the oldest
one's age per kind, and pool headroom per service and country (that last read is kept
``POOL_CACHE_SECONDS``: it groups every live participant).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config.metrics import process_registry

logger = logging.getLogger(__name__)

POOL_CACHE_SECONDS = 60.0
_pool_cache: tuple[float, list[tuple[str, str, int, int]]] | None = None


def _pool_rows() -> list[tuple[str, str, int, int]]:
    """(service slug, country, usable numbers, headroom) per pool, at most POOL_CACHE_SECONDS old."""
    global _pool_cache
    if _pool_cache is not None and time.monotonic() - _pool_cache[0] < POOL_CACHE_SECONDS:
        return _pool_cache[1]
    from proxy.models import Service
    from virtual_numbers.selectors import pool_health

    pools = pool_health()
    slugs = dict(Service.objects.filter(pk__in={pool.service_id for pool in pools}).values_list("pk", "slug"))
    rows = [(slugs.get(pool.service_id, "?"), pool.country, pool.usable, pool.headroom) for pool in pools]
    _pool_cache = (time.monotonic(), rows)
    return rows


class ProductCollector(Collector):
    """The figures only the database knows, read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # The process figures are still worth a scrape when the database is not there.
        database = GaugeMetricFamily(
            "masked_metrics_database_ok", "1 when this scrape could read the database's figures, else 0."
        )
        try:
            families = list(self._from_database())
        except DatabaseError:
            logger.warning("metrics: the database's figures could not be read", exc_info=True)
            families = []
        database.add_metric([], 1 if families else 0)
        yield database
        yield from families

    def _from_database(self) -> Iterator[GaugeMetricFamily]:
        from proxy.outbox import outbox_kinds

        now = timezone.now()
        waiting = GaugeMetricFamily(
            "masked_outbox_waiting", "Outbox rows still to be worked, by kind.", labels=["kind"]
        )
        past_due = GaugeMetricFamily(
            "masked_outbox_past_due", "Outbox rows past due (their task presumed lost), by kind.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "masked_outbox_oldest_past_due_seconds",
            "How long the oldest row past due has been due, by kind (0 when none).",
            labels=["kind"],
        )
        for kind in outbox_kinds():
            count, age = kind.backlog(now)
            waiting.add_metric([kind.name], kind.waiting().count())
            past_due.add_metric([kind.name], count)
            oldest.add_metric([kind.name], age or 0.0)
        yield waiting
        yield past_due
        yield oldest

        headroom = GaugeMetricFamily(
            "masked_pool_headroom",
            "Usable numbers minus the busiest real number's open conversations, per service and country.",
            labels=["service", "country"],
        )
        usable = GaugeMetricFamily(
            "masked_pool_usable_numbers",
            "Active voice numbers in the pool, per service and country.",
            labels=["service", "country"],
        )
        for slug, country, usable_numbers, room in _pool_rows():
            headroom.add_metric([slug, country], room)
            usable.add_metric([slug, country], usable_numbers)
        yield headroom
        yield usable


class _Recorded(Collector):
    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return self.registry.collect()


def _authorised(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        raise Http404("Metrics are off: set METRICS_TOKEN.")
    if not _authorised(request):
        response = HttpResponse("A valid bearer token is needed.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Recorded(process_registry()))
    registry.register(ProductCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
