"""Prometheus metrics the processes record (``config.metrics_view`` serves them with the product's figures).

Multiprocess: gunicorn forks several workers and Celery several children, each with its
own memory. With ``PROMETHEUS_MULTIPROC_DIR`` set (``config/gunicorn.py`` sets one for
web; ``WORKER_METRICS_PORT`` sets one for a worker) every process writes its figures to
files there and a scrape adds them up. Set it before anything imports
``prometheus_client``: the client picks its storage at import.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import task_postrun, worker_init
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client import values as prometheus_values

logger = logging.getLogger(__name__)

# Vonage waits 1 s to connect a call: the buckets are finest below that.
WEBHOOK_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

WEBHOOK_LATENCY = Histogram(
    "masked_webhook_duration_seconds",
    "Vonage webhook handling time, by route and outcome (connected, unknown, ended, pin, intercepted, error).",
    ["route", "outcome"],
    buckets=WEBHOOK_BUCKETS,
)
API_REQUESTS = Counter(
    "masked_api_requests_total",
    "REST API requests, by route, method and status code.",
    ["route", "method", "status"],
)
TASK_OUTCOMES = Counter(
    "masked_celery_tasks_total",
    "Celery tasks run, by task and outcome (done, skipped, retry, failed, ..., or the task state).",
    ["task", "outcome"],
)

# Results an outbox task returns (proxy.outbox.Outcome) and the validation task's words.
_RESULTS = {"done", "failed", "skipped", "retry", "valid", "invalid"}


def multiprocess() -> bool:
    """Whether this process records into PROMETHEUS_MULTIPROC_DIR: decided when the client
    was imported (the variable set later changes nothing)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue and bool(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    )


def process_registry() -> CollectorRegistry:
    """What this host's processes recorded: every process's files, or this process alone."""
    if multiprocess():
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def observe_request(*, route: str, method: str, status: int, outcome: str, seconds: float) -> None:
    """Record one HTTP request: webhooks by latency and outcome, the API by status."""
    if route.startswith("webhooks/"):
        WEBHOOK_LATENCY.labels(route, outcome or "none").observe(seconds)
    elif route.startswith("api/v1/"):
        API_REQUESTS.labels(route, method, str(status)).inc()


@task_postrun.connect
def _count_task(task: Any = None, retval: Any = None, state: str | None = None, **kwargs: Any) -> None:
    name = getattr(task, "name", "?")
    outcome = retval if state == "SUCCESS" and isinstance(retval, str) and retval in _RESULTS else state
    TASK_OUTCOMES.labels(name, (outcome or "unknown").lower()).inc()


@worker_init.connect
def _serve_worker_metrics(**kwargs: Any) -> None:
    """``WORKER_METRICS_PORT``: the worker serves its task figures on that port (all its children)."""
    port = os.environ.get("WORKER_METRICS_PORT", "").strip()
    if not port:
        return
    from prometheus_client import start_http_server

    start_http_server(int(port), registry=process_registry())
    logger.info("worker metrics on :%s/metrics", port)
