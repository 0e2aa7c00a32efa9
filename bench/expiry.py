"""5. Expiry sweep: time to write down 100,000 conversations past their expiry.

The due conversations are seeded in SQL with their participants (active, as the
routing index has them), beside as many that are not yet due. The baseline is the
naive sweep, one ``conversation_close`` per conversation, timed on a sample and
scaled to the same count.
"""

from __future__ import annotations

import datetime as dt
import time

from bench import db
from bench.context import Context
from bench.report import Figure

TITLE = "Expiry sweep"


def run(context: Context) -> None:
    from django.db import connection
    from django.utils import timezone

    from proxy.models import Conversation
    from proxy.services import conversation_close, conversations_expire_due

    sizes = context.sizes
    report = context.report
    due = sizes.expiry_conversations
    sample = sizes.expiry_naive_sample
    db.truncate_all()
    service = db.service_create(slug="bench-expiry")
    pool = db.pool_seed(service=service, country="US", count=10, base=db.US_POOL_BASE)
    started = time.monotonic()
    # 0..due-1 are due; the naive sample comes after them; then as many not yet due.
    db.conversations_seed(service=service, start=0, stop=due + sample, pool=pool, expires_in=-dt.timedelta(hours=1))
    db.conversations_seed(
        service=service, start=due + sample, stop=2 * due + sample, pool=pool, expires_in=dt.timedelta(days=1)
    )
    db.analyze()
    report.note(
        "5", f"seeded {2 * due + sample:,} conversations ({due + sample:,} due) in {time.monotonic() - started:.1f} s"
    )

    naive_ids = [db.conversation_uuid(i) for i in range(due, due + sample)]
    started = time.perf_counter()
    for pk in naive_ids:
        conversation_close(conversation=Conversation.objects.get(pk=pk), reason="expired")
    naive = (time.perf_counter() - started) / sample * due

    now = timezone.now()
    started = time.perf_counter()
    count = conversations_expire_due(now=now)
    seconds = time.perf_counter() - started

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM proxy_conversation WHERE status = 'open' AND expires_at <= %s", [now])
        left_open = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM proxy_participant p JOIN proxy_conversation c ON c.id = p.conversation_id "
            "WHERE p.active AND c.status <> 'open'"
        )
        left_active = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM proxy_conversation WHERE status = 'open'")
        still_open = cur.fetchone()[0]
    report.add(
        Figure(
            "5",
            f"expiry sweep of {due:,} due conversations ({count:,} written down)",
            seconds,
            "s",
            f"naive per-conversation close ({sample} timed, scaled)",
            naive,
            f"{naive / seconds:.0f}x faster" if seconds else "",
            "< 10 s" if due >= 100_000 else "< 10 s at 100,000",
            seconds < 10 and count == due,
        )
    )
    if left_open or left_active or still_open != due or count != due:
        report.note(
            "5",
            f"WRONG RESULT: {count} written down of {due}, {left_open} due still open, "
            f"{left_active} participants still active in ended conversations, {still_open} open (expected {due})",
        )
