"""Workers SIGKILLed in the middle of their tasks: another worker picks the work up and does it
exactly once (DESIGN.md, "Workers die"). An SMS whose worker died after the provider took it
is recorded from the provider (by its client-ref), not sent again.

Outbox timings are shortened for the test (a 6 s lease, 2 s grace, redrive every 2 s; in
production 45 s, 30 s and 30 s, two minutes in all): the same mechanism, in seconds.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from proxy.models import Call, CallbackDelivery, Notification, Participant, Recording
from telephony.models import SandboxMessage
from telephony.sandbox.engine import recording_create
from tests.conftest import ALICE, BOB
from tests.faults.conftest import environment, make_tenant, voice_webhook
from tests.faults.stack import Process, beat, free_port, wait_for, web

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

HANGING_WORKER = Path(__file__).with_name("hanging_worker.py")
RECOVERY_LIMIT = 120.0


def _worker(env: dict[str, str], workdir: Path, name: str, hang: str) -> Process:
    command = [sys.executable, str(HANGING_WORKER), "worker", "-l", "INFO", "-c", "4"]
    command += ["-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    extra = {"FAULT_HANG": hang, "FAULT_DIR": str(workdir)}
    process = Process(name, command, {**env, **extra}, workdir / f"{name}.log").start()
    assert wait_for(lambda: " ready." in process.output(20000), timeout=60), process.output()
    return process


def _hung(workdir: Path, point: str, count: int = 1) -> bool:
    return len(list(workdir.glob(f"{point}-*"))) >= count


def test_work_of_a_killed_worker_is_done_once_by_another(redis_server, marketplace, workdir, capsys):
    port = free_port()
    env = environment(redis_url=redis_server.url, port=port, MEDIA_ROOT=str(workdir / "media"))
    base = f"http://127.0.0.1:{port}"
    tenant = make_tenant(base, callback_url=marketplace.url)
    processes = [web(env, workdir), beat(env, workdir)]
    figures: list[str] = []
    try:
        # 1. Worker A dies checking the numbers, before POSTing a callback, and after fetching
        #    a recording but before storing it.
        first = _worker(env, workdir, "worker-a", "insight,callback,recording")
        processes.append(first)
        conversation = tenant.open(ALICE, BOB)
        # The recorded call's leg: a recording is copied for a call of ours only.
        Call.objects.create(uuid="CALL-rec", conversation_uuid="CON-recorded", conversation_id=conversation["id"])
        sandbox_file = recording_create(call_uuid="CALL-rec")
        record_event = {
            "recording_url": f"https://api.nexmo.com/v1/files/{sandbox_file.pk}",
            "recording_uuid": str(uuid.uuid4()),
            "conversation_uuid": "CON-recorded",
            "size": 1234,
        }
        assert voice_webhook(requests.Session(), base, "/webhooks/event", record_event).status_code in (200, 204)
        for point in ("insight", "callback", "recording"):
            assert wait_for(lambda p=point: _hung(workdir, p), timeout=60), f"{point}: {first.output()}"
        first.kill()
        killed = time.monotonic()

        # 2. Worker B takes all of it over, and dies itself after Vonage accepted both SMS.
        second = _worker(env, workdir, "worker-b", "sms")
        processes.append(second)
        done_at: dict[str, float] = {}

        def done(kind: str, condition: bool) -> bool:
            if condition and kind not in done_at:
                done_at[kind] = time.monotonic() - killed
            return condition

        def taken_over() -> bool:
            return all(
                [
                    done("validation", not Participant.objects.filter(validation="pending").exists()),
                    done("callback", CallbackDelivery.objects.filter(status="delivered").count() == 1),
                    done("recording", Recording.objects.filter(status="downloaded").count() == 1),
                    done("sms sent, worker died", _hung(workdir, "sms", 2)),
                ]
            )

        assert wait_for(taken_over, timeout=RECOVERY_LIMIT, interval=0.3), second.output()
        accepted = SandboxMessage.objects.count()
        second.kill()
        killed_again = time.monotonic()
        assert not Notification.objects.filter(status="sent").exists()  # the dead worker never wrote it

        # 3. Worker C finds both sends in doubt, asks the provider by client-ref, and records them.
        processes.append(_worker(env, workdir, "worker-c", ""))
        assert wait_for(
            lambda: Notification.objects.filter(status="sent").count() == 2, timeout=RECOVERY_LIMIT, interval=0.3
        ), processes[-1].output()
        sms_recovery = time.monotonic() - killed_again

        for kind, seconds in done_at.items():
            figures.append(f"  {kind:<24} done {seconds:5.1f} s after worker A was killed")
        figures.append(f"  {'sms recorded':<24} done {sms_recovery:5.1f} s after worker B was killed")
        messages = list(SandboxMessage.objects.values_list("client_ref", flat=True))
        received = [event_id for event_id, kind in marketplace.received if kind == "conversation.opened"]
        with capsys.disabled():
            print()
            print("Workers SIGKILLed mid-task (2 kills; lease 6 s, grace 2 s, redrive every 2 s):")
            print("\n".join(figures))
            print(
                f"  SMS accepted by the provider {len(messages)} (distinct client-refs {len(set(messages))}, "
                f"accepted before the second kill {accepted}); callbacks received {len(received)} "
                f"(distinct {len(set(received))}); recordings downloaded "
                f"{Recording.objects.filter(status='downloaded').count()}; lost 0"
            )

        # Exactly once: two SMS for two rows (none resent), one callback, one stored recording.
        assert accepted == 2
        assert sorted(messages) == sorted(f"notification-{n.pk}" for n in Notification.objects.all())
        assert received == [CallbackDelivery.objects.get().payload["id"]]
        recording = Recording.objects.get()
        assert recording.file and recording.attempts == 2
        assert set(Participant.objects.values_list("validation", flat=True)) == {"valid"}
        assert conversation["id"]
        assert max(done_at.values()) <= RECOVERY_LIMIT and sms_recovery <= RECOVERY_LIMIT
    finally:
        for process in processes:
            process.kill()
