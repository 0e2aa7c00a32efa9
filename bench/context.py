"""What every benchmark gets: sizes, the report, the server's environment, a scratch folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import server
from bench.report import Report


@dataclass(frozen=True)
class Sizes:
    # 1. answer webhook
    answer_conversations: int
    warmup_seconds: float
    peak_seconds: float  # per round
    peak_rounds: int
    peak_connections: int
    steady_seconds: float
    hook_seconds: float  # plain and intercepted answers, one connection, all rounds together
    read_rounds: int  # bench/reads.py: rounds of each shape of read, in turn
    read_count: int  # reads of each shape a round
    # 2. scale
    scale_steps: tuple[int, ...]
    route_samples: int
    scale_http_seconds: float
    scale_rounds: int
    # 3. pool efficiency
    sellers: int
    buyers: int
    orders: int
    pin_round_trips: int  # PIN calls timed (answer + input), each beside a pair caller's answer
    # 4. creation over the API
    create_existing: int  # open conversations already in the database
    create_total: int
    create_clients: int
    # 5. expiry sweep
    expiry_conversations: int
    expiry_naive_sample: int
    # 6. retention job
    retention_conversations: int
    retention_naive_sample: int
    # 7. masked messages
    messages_existing: int  # open conversations in the database
    messages_total: int  # texts sent by the 20 senders (plus one repeat in ten)
    messages_steady_seconds: float  # the open-loop phase at half the relay rate


FULL = Sizes(
    answer_conversations=10_000,
    warmup_seconds=3,
    peak_seconds=4,
    peak_rounds=5,
    peak_connections=16,
    steady_seconds=18,
    hook_seconds=18,
    read_rounds=4,
    read_count=4_000,
    scale_steps=(1_000, 100_000, 1_000_000),
    route_samples=3_000,
    scale_http_seconds=5,
    scale_rounds=5,
    sellers=3_000,
    buyers=20_000,
    orders=6_000,
    pin_round_trips=2_000,
    create_existing=50_000,
    create_total=4_000,
    create_clients=50,
    expiry_conversations=100_000,
    expiry_naive_sample=300,
    retention_conversations=100_000,
    retention_naive_sample=300,
    messages_existing=50_000,
    messages_total=4_000,
    messages_steady_seconds=10,
)

SMOKE = Sizes(
    answer_conversations=200,
    warmup_seconds=0,
    peak_seconds=0.5,
    peak_rounds=1,
    peak_connections=4,
    steady_seconds=0.5,
    hook_seconds=0.5,
    read_rounds=1,
    read_count=50,
    scale_steps=(100, 1_000, 3_000),
    route_samples=50,
    scale_http_seconds=0.3,
    scale_rounds=1,
    sellers=20,
    buyers=200,
    orders=100,
    pin_round_trips=20,
    create_existing=1_000,
    create_total=100,
    create_clients=50,
    expiry_conversations=1_000,
    expiry_naive_sample=20,
    retention_conversations=1_000,
    retention_naive_sample=20,
    messages_existing=1_000,
    messages_total=100,
    messages_steady_seconds=0.5,
)


@dataclass
class Context:
    sizes: Sizes
    report: Report
    database_url: str
    redis_url: str
    workers: int
    scratch: Path
    smoke: bool
    seed: int = 20261127
    server_env: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def server(self, **extra_env: str) -> Iterator[server.Server]:
        """gunicorn with the server environment, plus ``extra_env`` for this one server."""
        env = {**self.server_env, **extra_env}
        with server.gunicorn(env=env, workers=self.workers, log_path=self.scratch / "gunicorn.log") as s:
            yield s


# Webhooks to the server under test are signed with this, as Vonage signs them.
SIGNATURE_SECRET = "bench-signature-secret-0123456789abcdef"  # noqa: S105


def server_environment(*, database_url: str, redis_url: str) -> dict[str, str]:
    """The server's environment: production-like settings, nothing inherited that changes them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VONAGE_", "CELERY_", "PROXY_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
            "DJANGO_DEBUG": "false",
            # With DJANGO_DEBUG off the product refuses to load without an explicit
            # provider and a signature secret (DESIGN.md "Failing closed").
            "VONAGE_PROVIDER": "sandbox",
            "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
            "LOG_LEVEL": "WARNING",
            "PYTHONDONTWRITEBYTECODE": "1",
            # Tasks are enqueued, never run here: without Redis they wait in memory. Their
            # queue is the benchmark's own, which the runner deletes.
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_QUEUE": "bench",
        }
    )
    return env
