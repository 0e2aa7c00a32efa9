"""6. Retention: the rate at which ``retention_apply`` redacts ended conversations.

100,000 conversations that ended 100 days ago are seeded in SQL, each as the product
leaves one: two inactive participants with real numbers and names, a call with the
numbers Vonage reported and two raw events, an SMS notification per participant, and
for one conversation in a hundred a copied recording whose file is on disk (local
storage in a scratch folder). As many conversations that ended yesterday must stay as
they are. The baseline is the naive job, one conversation at a time through the ORM,
timed on a sample and scaled to the same count.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from bench import db
from bench.context import Context
from bench.report import Figure
from bench.scale import _backend_cpu_seconds

TITLE = "Retention job"
RECORDING_EVERY = 100
RETENTION_DAYS = 90


def run(context: Context) -> None:
    from django.db import connection
    from django.test import override_settings
    from django.utils import timezone

    from proxy.retention import retention_apply

    sizes = context.sizes
    report = context.report
    due = sizes.retention_conversations
    sample = sizes.retention_naive_sample
    media = context.scratch / "media"
    media.mkdir(parents=True, exist_ok=True)
    db.truncate_all()
    service = db.service_create(slug="bench-retention")
    service.retention_days = RETENTION_DAYS
    service.save()
    pool = db.pool_seed(service=service, country="US", count=10, base=db.US_POOL_BASE)
    started = time.monotonic()
    # 0..due-1 ended 100 days ago; the naive sample after them; then as many ended yesterday.
    _seed_ended(service, start=0, stop=due + sample, pool=pool, ended_ago=dt.timedelta(days=100), media=media)
    _seed_ended(
        service, start=due + sample, stop=2 * due + sample, pool=pool, ended_ago=dt.timedelta(days=1), media=media
    )
    db.analyze()
    files = sum(1 for path in media.rglob("*.mp3"))
    report.note(
        "6",
        f"seeded {2 * due + sample:,} ended conversations ({due + sample:,} past {RETENTION_DAYS} days; "
        f"{files:,} recording files on disk) in {time.monotonic() - started:.1f} s",
    )

    with override_settings(MEDIA_ROOT=str(media)):
        naive_ids = [db.conversation_uuid(i) for i in range(due, due + sample)]
        started = time.perf_counter()
        for pk in naive_ids:
            _naive_redact(pk)
        naive = (time.perf_counter() - started) / sample * due

        now = timezone.now()
        backend_before, process_before = _backend_cpu_seconds(), time.process_time()
        started = time.perf_counter()
        counts = retention_apply(now=now)
        seconds = time.perf_counter() - started
        cpu = (time.process_time() - process_before) + (_backend_cpu_seconds() - backend_before)
        again = time.perf_counter()
        second = retention_apply(now=now)
        rerun = time.perf_counter() - again

    redacted = counts.get("conversations", 0)
    rate = redacted / seconds if seconds else float("nan")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM proxy_participant p JOIN proxy_conversation c ON c.id = p.conversation_id "
            "WHERE c.redacted_at IS NOT NULL AND (p.real_number <> '' OR p.name <> '')"
        )
        left_numbers = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM proxy_conversation WHERE redacted_at IS NOT NULL")
        marked = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM proxy_participant p JOIN proxy_conversation c ON c.id = p.conversation_id "
            "WHERE c.redacted_at IS NULL AND p.real_number = ''"
        )
        wrongly = cur.fetchone()[0]
    files_left = sum(1 for path in media.rglob("*.mp3"))
    report.add(
        Figure(
            "6",
            f"retention job rate over {due:,} ended conversations ({redacted:,} redacted in {seconds:.1f} s)",
            rate,
            "conv/s",
            f"naive per-conversation redaction ({sample} timed, scaled)",
            due / naive if naive else None,
            f"{naive / seconds:.0f}x faster" if seconds else "",
            # A daily job: 100,000 conversations within 100 s leaves room for a busy day's backlog.
            ">= 1,000 conv/s",
            rate >= 1000 and redacted == due,
        )
    )
    report.add(
        Figure(
            "6",
            "retention job CPU per 1,000 conversations, this process + its PostgreSQL backend (they take turns: "
            "1,000 / this = the rate when nothing else runs)",
            cpu / redacted * 1000 if redacted else float("nan"),
            "s",
        )
    )
    report.note(
        "6",
        f"changed per kind: {dict(sorted(counts.items()))}; a second run changed {second or 'nothing'} "
        f"in {rerun * 1000:.0f} ms; wall {seconds:.1f} s against {cpu:.1f} s of CPU",
    )
    expected_marked = due + sample
    if (
        redacted != due
        or left_numbers
        or wrongly
        or marked != expected_marked
        or files_left != _files_kept(due, sample)
    ):
        report.note(
            "6",
            f"WRONG RESULT: {redacted} redacted of {due}, {left_numbers} participants of redacted conversations "
            f"still hold data, {wrongly} of kept ones lost it, {marked} marked (expected {expected_marked}), "
            f"{files_left} files left (expected {_files_kept(due, sample)})",
        )


def _files_kept(due: int, sample: int) -> int:
    """Files of the conversations that ended yesterday: one in RECORDING_EVERY of them."""
    start, stop = due + sample, 2 * due + sample
    return sum(1 for i in range(start, stop) if i % RECORDING_EVERY == 0)


def _naive_redact(pk: str) -> None:
    """What a first version would do: one conversation, row by row, through the ORM."""
    from django.db import transaction
    from django.utils import timezone

    from proxy.models import Call, CallEvent, Conversation, Notification, Recording

    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=pk)
        for participant in conversation.participants.all():
            participant.real_number, participant.name = "", ""
            participant.save(update_fields=["real_number", "name"])
            for notification in Notification.objects.filter(participant=participant):
                notification.text, notification.to_number = "", ""
                notification.save(update_fields=["text", "to_number"])
        for call in Call.objects.filter(conversation=conversation):
            call.from_number, call.to_number = "", ""
            call.save(update_fields=["from_number", "to_number"])
            for event in CallEvent.objects.filter(call=call):
                event.payload, event.payload_redacted = {"redacted": True}, True
                event.save(update_fields=["payload", "payload_redacted"])
        for recording in Recording.objects.filter(conversation=conversation):
            if recording.file:
                recording.file.delete(save=False)
            recording.status = "deleted"
            recording.save(update_fields=["file", "status"])
        conversation.redacted_at = timezone.now()
        conversation.save(update_fields=["redacted_at"])


def _seed_ended(service: Any, *, start: int, stop: int, pool: list[str], ended_ago: dt.timedelta, media: Path) -> None:
    """Conversations ``start`` to ``stop - 1`` ended ``ended_ago``, with what an ended conversation holds."""
    from django.db import connection

    from proxy.models import Call, CallEvent, Notification, Recording

    db.conversations_seed(service=service, start=start, stop=stop, pool=pool, expires_in=-ended_ago)
    ids = "(SELECT ('" + db.UUID_PREFIX + "' || lpad(to_hex(g.i), 12, '0'))::uuid)"
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE proxy_conversation SET status = 'closed', closed_reason = 'closed', ended_at = expires_at "
            f"WHERE id IN (SELECT {ids} FROM generate_series(%s, %s - 1) AS g(i))",
            [start, stop],
        )
        cur.execute(
            f"UPDATE proxy_participant SET active = false, name = 'Person ' || id "
            f"WHERE conversation_id IN (SELECT {ids} FROM generate_series(%s, %s - 1) AS g(i))",
            [start, stop],
        )
    conversation_id = f"('{db.UUID_PREFIX}' || lpad(to_hex(g.i), 12, '0'))::uuid"
    db.insert_select(
        Call,
        values={
            "uuid": "'leg-' || g.i",
            "conversation_uuid": "'CON-' || g.i",
            "conversation": conversation_id,
            "service": ("%s", [service.pk]),
            "direction": "'inbound'",
            "from_number": ("(%s::bigint + g.i)::text", [db.US_BUYER_BASE]),
            "to_number": ("(%s::text[])[1 + g.i %% 10]", [pool[:10]]),
            "status": "'completed'",
        },
        source="generate_series(%s, %s - 1) AS g(i)",
        params=[start, stop],
    )
    db.insert_select(
        CallEvent,
        values={
            "call": "c.id",
            "call_uuid": "c.uuid",
            "conversation_uuid": "c.conversation_uuid",
            "kind": "'status'",
            "status": "CASE WHEN e.n = 0 THEN 'answered' ELSE 'completed' END",
            "dedup_key": "c.uuid || '-' || e.n",
            "payload": "jsonb_build_object('from', c.from_number, 'to', c.to_number, 'uuid', c.uuid)",
        },
        source="generate_series(%s, %s - 1) AS g(i) JOIN proxy_call AS c ON c.uuid = 'leg-' || g.i "
        "CROSS JOIN (VALUES (0), (1)) AS e(n)",
        params=[start, stop],
    )
    db.insert_select(
        Notification,
        values={
            "participant": "p.id",
            "service": ("%s", [service.pk]),
            "to_number": "p.real_number",
            "from_number": "p.proxy_number",
            "text": "'Bench: to reach your driver, call +' || p.proxy_number || '.'",
            "status": "'delivered'",
        },
        source="proxy_participant AS p "
        f"WHERE p.conversation_id IN (SELECT {ids} FROM generate_series(%s, %s - 1) AS g(i))",
        params=[start, stop],
    )
    folder = media / "recordings" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    first = start + (-start % RECORDING_EVERY)
    for i in range(first, stop, RECORDING_EVERY):
        (folder / f"rec-{i}.mp3").write_bytes(b"ID3" + bytes(2045))
    db.insert_select(
        Recording,
        values={
            "recording_uuid": "'rec-' || g.i",
            "call": "c.id",
            "conversation": "c.conversation_id",
            "conversation_uuid": "c.conversation_uuid",
            "recording_url": "'https://api.nexmo.com/v1/files/' || g.i",
            "file": "'recordings/bench/rec-' || g.i || '.mp3'",
            "status": "'downloaded'",
            "size": "2048",
        },
        source="generate_series(%s, %s - 1) AS g(i) JOIN proxy_call AS c ON c.uuid = 'leg-' || g.i WHERE g.i %% %s = 0",
        params=[start, stop, RECORDING_EVERY],
    )
