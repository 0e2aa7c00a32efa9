"""The Celery app: JSON only, settings under the CELERY_ namespace, tasks autodiscovered.

Without ``REDIS_URL`` the settings make tasks run in-process (eagerly, after commit),
so the product works on a bare machine; periodic work then needs
``manage.py run_periodic`` (see docs/operations.md).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import celeryd_after_setup
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
if os.environ.get("WORKER_METRICS_PORT") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Prefork children write their task figures here; the worker serves their sum
    # (config.metrics). Set before anything imports prometheus_client.
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="masked-calling-worker-metrics-")

# Where the beat's heartbeat task leaves its time, for /health.
WORKER_HEARTBEAT_KEY = "celery:worker-heartbeat"

app = Celery("masked_calling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# --- Queues ----------------------------------------------------------------------------------
# A slow marketplace endpoint must not hold up SMS, nor large recording downloads the
# rest: each kind of work has a queue (docs/operations.md, "Celery queues").
QUEUES = ("celery", "sms", "callbacks", "recordings")
ROUTES = {
    "proxy.tasks.send_notification": "sms",
    "proxy.tasks.deliver_callback": "callbacks",
    "proxy.tasks.deliver_callbacks": "callbacks",
    "proxy.tasks.send_message": "sms",
    "proxy.tasks.send_messages": "sms",
    "proxy.tasks.assemble_message": "sms",
    "proxy.tasks.download_recording": "recordings",
    "proxy.tasks.download_transcript": "recordings",
}
# CELERY_QUEUE lets two deployments, or a test run, share one Redis without taking each
# other's tasks: it names the default queue and prefixes the others ("<name>.sms", ...).
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")


def queue_name(short: str) -> str:
    """The broker's name for one of ``QUEUES``, under the current default queue's prefix."""
    base = app.conf.task_default_queue
    if short == "celery":
        return base
    return short if base == "celery" else f"{base}.{short}"


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str]:
    """Celery router: each task to its kind's queue, everything else to the default queue."""
    return {"queue": queue_name(ROUTES.get(name, "celery"))}


app.conf.task_routes = (route_task,)
app.conf.task_queues = [Queue(queue_name(short)) for short in QUEUES]


@celeryd_after_setup.connect
def _consume_chosen_queues(sender: str, instance: Any, **kwargs: Any) -> None:
    """``CELERY_WORKER_QUEUES=celery,sms`` makes this worker take only those (short names;
    default: all), so one Procfile line runs every worker group."""
    chosen = [name.strip() for name in os.environ.get("CELERY_WORKER_QUEUES", "").split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if unknown:
        raise ValueError(f"CELERY_WORKER_QUEUES: unknown queue(s) {unknown}; choose from {list(QUEUES)}")
    if chosen:
        instance.app.amqp.queues.select([queue_name(short) for short in chosen])


# A broker that vanishes or stops answering must not hold a web request: publishing gives
# up within about a second (the outbox row is already committed and the redrive queues it
# again), and config.redis_guard then skips the broker for a few seconds. No retry: one
# would double the wait on a silent Redis, and redis-py reconnects a pooled connection that
# a Redis restart left stale by itself.
app.conf.broker_transport_options = {
    "socket_timeout": float(os.environ.get("CELERY_BROKER_SOCKET_TIMEOUT", "0.5")),
    "socket_connect_timeout": float(os.environ.get("CELERY_BROKER_CONNECT_TIMEOUT", "0.5")),
}
app.conf.task_publish_retry_policy = {"max_retries": 0, "interval_start": 0, "interval_step": 0, "interval_max": 0}

REDRIVE_EVERY_SECONDS = float(os.environ.get("OUTBOX_REDRIVE_EVERY_SECONDS", "30"))

# django-celery-beat's DatabaseScheduler copies these entries into its tables when beat
# starts, so staff can see and pause them in the admin.
app.conf.beat_schedule = {
    "expire-conversations": {
        "task": "proxy.tasks.conversations_expire",
        "schedule": 30.0,
        "options": {"expire_seconds": 25},
    },
    # Often: recovery of a lost task waits for it (proxy.outbox: lease + grace + this).
    "outbox-redrive": {
        "task": "proxy.tasks.outbox_redrive",
        "schedule": REDRIVE_EVERY_SECONDS,
        "options": {"expire_seconds": max(1, int(REDRIVE_EVERY_SECONDS) - 5)},
    },
    "worker-heartbeat": {
        "task": "proxy.tasks.worker_heartbeat",
        "schedule": 30.0,
        "options": {"expire_seconds": 25},
    },
    "idempotency-purge": {
        "task": "proxy.tasks.idempotency_purge",
        "schedule": crontab(minute=7),
    },
    # Recordings, transcripts, message texts, names, real numbers and raw event payloads
    # past their retention (proxy.retention).
    "retention": {
        "task": "proxy.tasks.retention_run",
        "schedule": crontab(minute=37, hour=3),
    },
    "number-checks-prune": {
        "task": "virtual_numbers.tasks.number_checks_prune_task",
        "schedule": crontab(minute=17, hour=3),
    },
}


def retry_later(task: Task, countdown: float) -> None:
    """Ask Celery to run ``task`` again in ``countdown`` seconds.

    Run eagerly (no broker), a retry would run at once, inside the web request, without
    any wait; the row stays queued instead and the outbox redrive picks it up.
    """
    if task.request.is_eager:
        return
    raise task.retry(countdown=countdown, max_retries=None)
