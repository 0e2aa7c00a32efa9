"""The production shape on this machine: gunicorn with config/gunicorn.py, two Celery worker
groups (as compose.yaml runs them) and beat on Redis, PostgreSQL, DJANGO_DEBUG off. A
marketplace opens a conversation (two SMS, a callback), a whole signed call is played
through it (simulate_call: answer, events, a recording), a delivery receipt comes back;
the logs are JSON with the request id carried into the workers, /metrics adds up every
gunicorn worker, and no log line holds a whole real number."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from proxy.models import Call, CallbackDelivery, Notification, Recording
from telephony.models import SandboxMessage
from tests.conftest import ALICE, BOB
from tests.faults.conftest import environment, make_tenant
from tests.faults.stack import METRICS_TOKEN, ROOT, SECRET, beat, free_port, wait_for, web, worker
from webhooks.signatures import sms_sign_params

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REQUEST_ID = "marketplace-req-0001"


def test_a_call_an_sms_and_a_callback_through_the_production_shape(redis_server, marketplace, workdir, capsys):
    port = free_port()
    env = environment(redis_url=redis_server.url, port=port, MEDIA_ROOT=str(workdir / "media"))
    base = f"http://127.0.0.1:{port}"
    tenant = make_tenant(base, callback_url=marketplace.url)
    processes = [web(env, workdir, workers=2), beat(env, workdir)]
    try:
        processes.append(worker(env, workdir, "worker", concurrency=2, CELERY_WORKER_QUEUES="celery,sms"))
        processes.append(
            worker(
                env,
                workdir,
                "worker-http",
                concurrency=4,
                CELERY_WORKER_QUEUES="callbacks,recordings",
                WORKER_POOL="threads",
            )
        )
        ready = requests.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"

        # The marketplace opens a conversation: each person gets an SMS, the marketplace a callback.
        opened = tenant.api(
            "POST",
            "/api/v1/conversations",
            json={"participants": [{"number": ALICE}, {"number": BOB}], "record": True},
            headers={"X-Request-ID": REQUEST_ID},
        )
        assert opened.status_code == 201, opened.text
        assert opened.headers["X-Request-ID"] == REQUEST_ID
        alice_proxy = opened.json()["participants"][0]["proxy_number"]
        assert wait_for(lambda: Notification.objects.filter(status="sent").count() == 2, timeout=60), processes[
            2
        ].output(3000)
        assert wait_for(lambda: any(kind == "conversation.opened" for _, kind in marketplace.received), timeout=60)

        # Vonage reports the SMS delivered (signed as Vonage signs SMS webhooks).
        sms = Notification.objects.get(to_number=ALICE)
        receipt = sms_sign_params(
            {
                "msisdn": ALICE,
                "to": sms.from_number,
                "messageId": sms.message_id,
                "status": "delivered",
                "client-ref": f"notification-{sms.pk}",
                "err-code": "0",
            },
            secret=SECRET,
        )
        assert requests.post(f"{base}/webhooks/sms/status", data=receipt, timeout=5).status_code in (200, 204)

        # Alice calls her proxy number; Vonage (the sandbox) plays the whole call, signed.
        played = subprocess.run(
            [sys.executable, "manage.py", "simulate_call", "--from", ALICE, "--to", alice_proxy, "--url", base],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert played.returncode == 0, played.stdout + played.stderr

        def call_done() -> bool:
            return (
                Call.objects.filter(status="completed").exists()
                and Recording.objects.filter(status="downloaded").exists()
                and any(kind == "call.completed" for _, kind in marketplace.received)
            )

        assert wait_for(call_done, timeout=60), processes[3].output(3000)
        sms.refresh_from_db()
        assert sms.status == "delivered"
        assert not CallbackDelivery.objects.exclude(status="delivered").exists()

        health = requests.get(f"{base}/health", timeout=10).json()
        assert health["checks"]["workers"]["ok"] is True and health["checks"]["redis"]["ok"] is True
        assert all(not kind["backlog"] for kind in health["checks"]["outbox"]["kinds"].values())
        metrics = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert metrics.status_code == 200
        assert 'masked_webhook_duration_seconds_count{outcome="connected",route="webhooks/answer"} 1.0' in metrics.text
        assert 'masked_api_requests_total{method="POST",route="api/v1/conversations",status="201"} 1.0' in metrics.text

        # Logs: JSON, the request's id in the web line and in the workers' task lines, no real number.
        web_lines = processes[0].json_lines()
        request_line = next(line for line in web_lines if line.get("route") == "api/v1/conversations")
        assert (request_line["request_id"], request_line["status"], request_line["method"]) == (REQUEST_ID, 201, "POST")
        task_lines = [line for line in processes[2].json_lines() if line.get("request_id") == REQUEST_ID]
        assert any("send_notification" in line["message"] for line in task_lines), processes[2].output(3000)
        for process in processes:
            text = process.log.read_text(errors="replace")
            assert ALICE not in text and BOB not in text, f"a real number in {process.name}'s log"

        with capsys.disabled():
            print()
            print(
                f"Production shape: gunicorn x2, workers celery+sms (prefork) and callbacks+recordings (threads), "
                f"beat, Redis, PostgreSQL. SMS sent {SandboxMessage.objects.count()}, receipt applied "
                f"({sms.status}); call {Call.objects.filter(direction='inbound').first().status}; callbacks "
                f"{sorted(kind for _, kind in marketplace.received)}; recording "
                f"{Recording.objects.get().status}; log lines with the request id in the worker: {len(task_lines)}"
            )
    finally:
        for process in processes:
            process.stop()
