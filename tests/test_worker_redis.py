"""A real Celery worker process on the Redis broker: what the outbox promises, end to end.

Runs only with ``REDIS_URL`` set and PostgreSQL as the database: the worker is another
process and must see the same test database, which an in-memory SQLite cannot offer.
Each run uses its own queue, so stale messages or other workers on the same Redis
never interfere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from config.celery import QUEUES, app
from proxy.message_outbox import messages_wake_taken
from proxy.models import Message, MessagePart, Notification, Participant
from telephony.models import SandboxMessage
from telephony.sandbox.engine import failure_inject
from tests.conftest import ALICE, BOB, CAROL

REDIS_URL = os.environ.get("REDIS_URL", "")
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        not REDIS_URL, reason="needs a real Redis broker: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
    ),
    pytest.mark.django_db(transaction=True),
]


def _database_url() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    auth = db.get("USER") or "postgres"
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def _wait_for(condition: Callable[[], bool], *, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


class Worker:
    """``celery -A config worker -P solo`` on a queue of its own, against the test database."""

    def __init__(self, queue: str, log: Path) -> None:
        self.queue = queue
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        # Settings of this test for the worker process, as environment variables.
        self.extra_env: dict[str, str] = {}

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": REDIS_URL,
            "CELERY_QUEUE": self.queue,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "DJANGO_SECRET_KEY": "worker-test-secret-key",
            "VONAGE_PROVIDER": "sandbox",
            "VONAGE_SIGNATURE_SECRET": "worker-test-signature-secret",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **self.extra_env,
        }
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo", "-l", "info"]
        # No -Q: the worker takes every queue its CELERY_QUEUE names (config.celery.QUEUES).
        command += ["-n", f"{self.queue}@%h", "--without-gossip", "--without-mingle"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def broker(tmp_path) -> Iterator[Worker]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): the worker process must share the test database")
    queue = f"test-{uuid.uuid4().hex[:10]}"
    saved = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    worker = Worker(queue, tmp_path / "worker.log")
    yield worker
    worker.stop()
    # A drain woken for the last texts may still wait in the queue deleted below: its
    # wake-up flag would keep the next test's texts from waking one (for its 10 s).
    messages_wake_taken()
    app.conf.task_always_eager, app.conf.task_default_queue = saved
    with app.connection_for_write() as conn:
        for name in [queue] + [f"{queue}.{short}" for short in QUEUES if short != "celery"]:
            conn.default_channel.queue_delete(name)


def _create(api, *numbers: str) -> str:
    response = api.post("/api/v1/conversations", {"participants": [{"number": n} for n in numbers]}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _sent(conversation_id: str) -> bool:
    notifications = Notification.objects.filter(participant__conversation_id=conversation_id)
    return notifications.count() == 2 and all(n.status == "sent" for n in notifications)


def test_worker_sends_both_sms_including_those_queued_while_it_was_down(api, client, pool, broker, settings):
    settings.REDIS_URL = REDIS_URL
    # The worker is not running yet: the tasks wait in Redis, the rows wait queued.
    first = _create(api, ALICE, BOB)
    assert set(Notification.objects.values_list("status", flat=True)) == {"queued"}
    assert not SandboxMessage.objects.exists()

    broker.start()
    assert _wait_for(lambda: _sent(first)), broker.output()
    assert sorted(SandboxMessage.objects.values_list("to_number", flat=True)) == [ALICE, BOB]

    health = client.get("/health").json()
    assert health["checks"]["redis"]["ok"] is True
    assert health["checks"]["workers"]["ok"] is True, health

    second = _create(api, ALICE, CAROL)
    assert _wait_for(lambda: _sent(second)), broker.output()
    # Exactly one SMS per outbox row, with the row's text.
    assert SandboxMessage.objects.count() == 4
    for notification in Notification.objects.all():
        message = SandboxMessage.objects.get(message_id=notification.message_id)
        assert (message.to_number, message.text) == (notification.to_number, notification.text)


def test_worker_retries_a_throttled_sms_with_backoff(api, pool, broker):
    failure_inject(path="/sms/", mode="throttle", count=1)
    broker.start()
    conversation = _create(api, ALICE, BOB)
    assert _wait_for(lambda: _sent(conversation), timeout=90), broker.output()
    attempts = sorted(Notification.objects.values_list("attempts", flat=True))
    assert attempts == [1, 2]
    assert SandboxMessage.objects.count() == 2


# --- Masked messages ---------------------------------------------------------------------------


def _inbound(client, *, sender: str, to: str, text: str, message_id: str, **extra: str) -> None:
    params = {"msisdn": sender, "to": to, "messageId": message_id, "text": text, "type": "text", **extra}
    assert client.post("/webhooks/sms/inbound", params).status_code == 200


def _open_quietly(api) -> dict[str, Participant]:
    """Alice and Bob's conversation, without the SMS that tell them their numbers."""
    body = {"participants": [{"number": ALICE}, {"number": BOB}], "notify": False}
    assert api.post("/api/v1/conversations", body, format="json").status_code == 201
    return {p.real_number: p for p in Participant.objects.all()}


def _relayed(count: int) -> bool:
    return Message.objects.filter(kind="relay", status="sent").count() == count


def test_worker_relays_each_text_once_however_often_vonage_retries(api, client, pool, broker, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    people = _open_quietly(api)
    alice, bob = people[ALICE], people[BOB]
    broker.start()
    for n in range(10):
        for _ in range(2):  # every webhook delivered twice, as Vonage does when it retries
            sender, to = (ALICE, alice.proxy_number_id) if n % 2 == 0 else (BOB, bob.proxy_number_id)
            _inbound(client, sender=sender, to=to, text=f"text {n} ✓", message_id=f"W{n:04d}")
    assert _wait_for(lambda: _relayed(10)), broker.output()
    assert Message.objects.filter(kind="relay").count() == 10
    texts = sorted(SandboxMessage.objects.values_list("text", flat=True))
    assert texts == sorted(f"text {n} ✓" for n in range(10))
    for message in Message.objects.filter(kind="relay"):
        sent = SandboxMessage.objects.get(client_ref=f"message-{message.pk}")
        assert (sent.to_number, sent.from_number, sent.text) == (message.to_number, message.from_number, message.text)


def test_worker_relays_an_incomplete_text_once_its_wait_is_over(api, client, pool, broker, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    settings.MESSAGE_PARTS_WAIT_SECONDS = 1
    broker.extra_env = {"MESSAGE_PARTS_WAIT_SECONDS": "1"}
    alice = _open_quietly(api)[ALICE]
    broker.start()
    concat = {"concat": "true", "concat-ref": "A1", "concat-total": "3"}
    _inbound(client, sender=ALICE, to=alice.proxy_number_id, text="first, ", message_id="P1", **concat,
             **{"concat-part": "1"})  # fmt: skip
    _inbound(client, sender=ALICE, to=alice.proxy_number_id, text="third", message_id="P3", **concat,
             **{"concat-part": "3"})  # fmt: skip
    # The second part never comes: the group's timer task joins what arrived.
    assert _wait_for(lambda: _relayed(1)), broker.output()
    assert SandboxMessage.objects.get().text == "first, third"
    assert not MessagePart.objects.exists()


def test_worker_retries_a_throttled_relay_with_backoff(api, client, pool, broker, settings):
    settings.VONAGE_SIGNATURE_SECRET = ""
    alice = _open_quietly(api)[ALICE]
    failure_inject(path="/sms/", mode="throttle", count=1)
    broker.start()
    _inbound(client, sender=ALICE, to=alice.proxy_number_id, text="try again", message_id="T1")
    assert _wait_for(lambda: _relayed(1), timeout=90), broker.output()
    assert Message.objects.get(kind="relay").attempts == 2
    assert SandboxMessage.objects.count() == 1
