"""Redis stopped, then blackholed, then back empty: webhooks and the API answer correctly within
2 s throughout; the work waits in the outboxes and goes out once Redis is back, nothing lost,
nothing sent twice (DESIGN.md, "Redis is off the call path")."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests

from proxy.models import CallbackDelivery, Notification
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB
from tests.faults.conftest import Tally, environment, make_tenant, voice_webhook
from tests.faults.stack import Blackhole, Process, beat, free_port, wait_for, web, worker

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

LIMIT = 2.0
# Longer than the breaker's cooldown (config.redis_guard): each web worker tries the dead
# Redis again, and pays its client timeouts, several times per phase.
PHASE_SECONDS = 8.0


def _connects(response: requests.Response) -> bool:
    return response.status_code == 200 and any(action.get("action") == "connect" for action in response.json())


def _all_out() -> bool:
    """Nothing waits: every SMS sent (or failed because its conversation was closed first),
    every callback delivered."""
    return (
        not Notification.objects.filter(status="queued").exists()
        and not CallbackDelivery.objects.exclude(status="delivered").exists()
    )


def _not_recovered(processes: list[Process]) -> str:
    """What to read when the work did not go out: whether each process still runs, and the
    worker's and beat's own words (enough of them to see what began a crash)."""

    def state(process: Process) -> str:
        code = process.process.poll() if process.process is not None else "stopped"
        return f"{process.name}: {'running' if code is None else f'exited ({code})'}"

    states = ", ".join(state(process) for process in processes)
    return f"{states}\n--- worker ---\n{processes[1].output(20000)}\n--- beat ---\n{processes[2].output(4000)}"


def test_webhooks_and_api_answer_without_redis_and_the_work_goes_out_when_it_is_back(
    redis_server, marketplace, workdir, capsys
):
    port = free_port()
    env = environment(redis_url=redis_server.url, port=port)
    base = f"http://127.0.0.1:{port}"
    tenant = make_tenant(base, callback_url=marketplace.url)
    processes = [web(env, workdir), worker(env, workdir, "worker"), beat(env, workdir)]
    session = requests.Session()
    try:
        first = tenant.open(ALICE, BOB)
        alice_proxy = first["participants"][0]["proxy_number"]
        assert wait_for(_all_out, timeout=60), processes[1].output()
        people = itertools.cycle(f"120155501{n:02d}" for n in range(10, 50))
        rounds = itertools.count()

        def one_round(tally: Tally) -> None:
            a, b = next(people), next(people)
            body = {"participants": [{"number": a}, {"number": b}]}
            created = tally.timed(
                "api create",
                lambda: tenant.api("POST", "/api/v1/conversations", json=body),
                lambda r: r.status_code == 201,
            )
            if created is not None and created.status_code == 201 and next(rounds) % 3 == 0:
                # Some are closed at once: their SMS must not go, their closing is called back.
                path = f"/api/v1/conversations/{created.json()['id']}"
                tally.timed("api close", lambda: tenant.api("DELETE", path), lambda r: r.status_code == 204)
            tally.timed("api list", lambda: tenant.api("GET", "/api/v1/conversations"), lambda r: r.status_code == 200)
            answer = {"from": ALICE, "to": alice_proxy, "uuid": uuid.uuid4().hex, "conversation_uuid": "CON-1"}
            tally.timed("answer webhook", lambda: voice_webhook(session, base, "/webhooks/answer", answer), _connects)
            tally.timed(
                "fallback webhook",
                lambda: voice_webhook(session, base, "/webhooks/fallback", {**answer, "uuid": uuid.uuid4().hex}),
                _connects,
            )
            event = {
                "uuid": uuid.uuid4().hex,
                "conversation_uuid": f"CON-{uuid.uuid4().hex[:8]}",
                "status": "completed",
                "direction": "inbound",
                "from": ALICE,
                "to": alice_proxy,
                "duration": "12",
                "price": "0.0042",
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
            tally.timed(
                "event webhook (completed)",
                lambda: voice_webhook(session, base, "/webhooks/event", event),
                lambda r: r.status_code in (200, 204),
            )
            tally.timed("health/ready", lambda: session.get(f"{base}/health/ready", timeout=5), lambda r: r.ok)

        def phase(tally: Tally) -> None:
            started = time.monotonic()
            for _ in range(60):
                one_round(tally)
                if time.monotonic() - started >= PHASE_SECONDS:
                    return
                time.sleep(0.3)

        redis_server.stop()
        down = Tally(limit=LIMIT)
        phase(down)
        health = session.get(f"{base}/health", timeout=5)
        assert health.status_code == 200 and health.json()["checks"]["redis"]["ok"] is False

        blackhole = Blackhole(redis_server.port)
        blackhole.start()
        silent = Tally(limit=LIMIT)
        try:
            phase(silent)
        finally:
            blackhole.stop()

        waiting = (
            Notification.objects.filter(status="queued").count(),
            CallbackDelivery.objects.filter(status="pending").count(),
        )
        redis_server.start()  # empty: no persistence
        back = time.monotonic()
        recovered = wait_for(_all_out, timeout=120, interval=0.5)
        recovery = time.monotonic() - back

        sms_rows = Notification.objects.filter(participant__conversation__status="open").count()
        sent_once = SandboxMessage.objects.values("client_ref").distinct().count()
        callback_ids = [event_id for event_id, _ in marketplace.received]
        with capsys.disabled():
            print()
            print(down.report("Redis stopped"))
            print(silent.report("Redis blackholed (accepts, never answers)"))
            print(
                f"Redis back, empty: {waiting[0]} SMS and {waiting[1]} callbacks had waited in their outboxes; "
                f"all out after {recovery:.1f} s. SMS rows {sms_rows}, sent {SandboxMessage.objects.count()} "
                f"({sent_once} distinct); callbacks {CallbackDelivery.objects.count()}, received {len(callback_ids)} "
                f"({len(set(callback_ids))} distinct); lost {sms_rows - sent_once}"
            )
        # The blackhole was really asked (the breaker let requests try it): some waited on it.
        assert max(silent.worst.values()) >= 0.4, silent.report("nothing waited on the blackhole")
        for tally in (down, silent):
            assert tally.total_failed == 0, tally.report("failures")
            assert tally.total_slow == 0, tally.report("over 2 s")
        assert waiting[0] > 0 and waiting[1] > 0, "the outage should have left work waiting"
        assert recovered and recovery <= 120, _not_recovered(processes)
        # Nothing lost, nothing twice: every SMS of an open conversation went, once.
        assert not Notification.objects.filter(participant__conversation__status="open").exclude(status="sent")
        assert SandboxMessage.objects.count() == sms_rows == sent_once
        assert len(callback_ids) == len(set(callback_ids)) == CallbackDelivery.objects.count()
    finally:
        for process in processes:
            process.stop()
