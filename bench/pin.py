"""3, PIN mode "always": the pool-efficiency marketplace on one number per country, and a PIN call's latency.

- Allocation: the same orders through the real ``conversation_create`` for a service in
  PIN mode ``always`` whose pool is one number per country. Every caller keys in a PIN,
  so a person may hold that number in all their conversations: the target is those two
  numbers and no 409, far below the per-person lower bound the pair rule needs.
- Latency: a PIN call is two round trips the caller waits through: the answer webhook
  (which answers the prompt) and, once the keys are in, the input event (which answers
  the connect). Both are timed together over HTTP, one call at a time, against the
  gunicorn server, for random participants of the marketplace just allocated, each
  keying in their own PIN. Beside it, in the same loop, the answer webhook for a caller
  routed by their number (a pair service's seeded conversations): one round trip.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from bench import answer, db, load
from bench.context import Context
from bench.report import Figure

COUNTRIES = ("US", "GB")
PAIR_CONVERSATIONS = 1_000


def allocation(context: Context, market: object) -> tuple[dict[str, int], int, float, int]:
    """The marketplace's orders in PIN mode ``always`` with one number per country.

    Returns numbers used per country, 409s, seconds, and PINs found twice among the
    open participants of one number (the constraint says 0).
    """
    from django.db import connection

    from proxy.errors import PoolExhausted
    from proxy.models import Service
    from proxy.services import conversation_create

    orders = market.orders  # type: ignore[attr-defined]
    db.truncate_all()
    service = db.service_create(slug="bench-pin", default_country="US")
    Service.objects.filter(pk=service.pk).update(pin_mode=Service.PinMode.ALWAYS)
    service.refresh_from_db()
    db.pool_seed(service=service, country="US", count=1, base=db.US_POOL_BASE)
    db.pool_seed(service=service, country="GB", count=1, base=db.GB_POOL_BASE)
    db.analyze()
    exhausted = 0
    started = time.perf_counter()
    for order in orders:
        try:
            conversation_create(
                service=service,
                participants=[{"number": order.seller}, {"number": order.buyer}],
                notify=False,
            )
        except PoolExhausted:
            exhausted += 1
    seconds = time.perf_counter() - started
    with connection.cursor() as cur:
        cur.execute(
            "SELECT n.country, count(DISTINCT p.proxy_number) FROM proxy_participant p "
            "JOIN numbers_virtualnumber n ON n.number = p.proxy_number WHERE p.active GROUP BY n.country"
        )
        used = dict.fromkeys(COUNTRIES, 0) | dict(cur.fetchall())
        cur.execute(
            "SELECT count(*) FROM (SELECT proxy_number, pin FROM proxy_participant "
            "WHERE active AND pin IS NOT NULL GROUP BY proxy_number, pin HAVING count(*) > 1) AS twice"
        )
        duplicates = cur.fetchone()[0]
    db.analyze()
    return used, exhausted, seconds, duplicates


@dataclass
class Timings:
    pin_call: list[float] = field(default_factory=list)  # answer + input, ms
    prompt: list[float] = field(default_factory=list)  # the answer alone
    connect: list[float] = field(default_factory=list)  # the input alone
    pair: list[float] = field(default_factory=list)  # a pair caller's answer
    wrong: list[str] = field(default_factory=list)  # what went wrong, when something did


class _Client:
    """One request per connection (gunicorn's sync workers close it anyway), signed like Vonage's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.get_auth = answer.signed_headers()["Authorization"]

    def get(self, path: str) -> tuple[int, bytes]:
        return self._send("GET", path, b"", {"Authorization": self.get_auth})

    def post(self, path: str, body: bytes, auth: str) -> tuple[int, bytes]:
        return self._send("POST", path, body, {"Authorization": auth, "Content-Type": "application/json"})

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(load.HOST, self.port, timeout=10)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def _pin_callers(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(real number, proxy number, PIN) of random open participants of the PIN service."""
    from proxy.models import Participant

    rows = list(
        Participant.objects.filter(active=True, pin__isnull=False).values_list("real_number", "proxy_number", "pin")
    )
    # A proxy number is its virtual number's key (the digits); the filter leaves no PIN empty.
    return [(real, str(proxy), str(pin)) for real, proxy, pin in (rng.choice(rows) for _ in range(count))]


def round_trips(context: Context, *, samples: int) -> Timings:
    """Time PIN calls (answer + input) and pair answers, interleaved, one at a time."""
    from webhooks.signatures import sign_voice_webhook

    rng = random.Random(context.seed)
    pin_callers = _pin_callers(samples, rng)
    service = db.service_create(slug="bench-pin-pairs")
    pool = db.pool_seed(service=service, country="US", count=answer.POOL_SIZE, base=db.US_POOL_BASE + 100)
    db.conversations_seed(service=service, start=0, stop=PAIR_CONVERSATIONS, pool=pool, expires_in=dt.timedelta(days=1))
    db.analyze()
    pair_callers = [
        db.seeded_participant(rng.randrange(PAIR_CONVERSATIONS), pool=pool, seller=rng.random() < 0.5)
        for _ in range(samples)
    ]
    timings = Timings()
    with context.server(VONAGE_SIGNATURE_SECRET=answer.SIGNATURE_SECRET) as server:
        client = _Client(server.port)
        # Warm every worker's connection and caches on both paths before measuring.
        for real, proxy in pair_callers[: 4 * server.workers]:
            client.get("/webhooks/answer?" + urlencode({"from": real, "to": proxy, "uuid": "warm"}))
        with load._no_collector_pauses():
            for i, ((real, proxy, pin), (pair_real, pair_proxy)) in enumerate(
                zip(pin_callers, pair_callers, strict=True)
            ):
                call = str(uuidlib.uuid4())
                # What Vonage sends once the keys are in, signed before the clock starts.
                body = json.dumps(
                    {
                        "from": real,
                        "to": proxy,
                        "uuid": call,
                        "conversation_uuid": f"CON-{call}",
                        "dtmf": {"digits": pin, "timed_out": False},
                        "speech": None,
                        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                    }
                ).encode()
                auth = f"Bearer {sign_voice_webhook(body=body, secret=answer.SIGNATURE_SECRET)}"
                query = urlencode({"from": real, "to": proxy, "uuid": call, "conversation_uuid": f"CON-{call}"})

                started = time.perf_counter()
                status, raw = client.get(f"/webhooks/answer?{query}")
                prompted = time.perf_counter()
                ncco = json.loads(raw) if status == 200 else []
                if [a.get("action") for a in ncco] != ["talk", "input"]:
                    timings.wrong.append(f"answer {status}: {[a.get('action') for a in ncco]}")
                    continue
                url = urlsplit(ncco[-1]["eventUrl"][0])
                status, raw = client.post(f"{url.path}?{url.query}", body, auth)
                finished = time.perf_counter()
                connected = json.loads(raw) if status == 200 else []
                if not connected or connected[-1].get("action") != "connect":
                    timings.wrong.append(f"input {status}: {[a.get('action') for a in connected]}")
                    continue
                timings.pin_call.append((finished - started) * 1000)
                timings.prompt.append((prompted - started) * 1000)
                timings.connect.append((finished - prompted) * 1000)

                query = urlencode({"from": pair_real, "to": pair_proxy, "uuid": f"pair-{i}"})
                started = time.perf_counter()
                status, raw = client.get(f"/webhooks/answer?{query}")
                finished = time.perf_counter()
                if status != 200 or json.loads(raw)[-1].get("action") != "connect":
                    timings.wrong.append(f"pair answer {status}")
                    continue
                timings.pair.append((finished - started) * 1000)
    return timings


def run(context: Context, market: object, bound: dict[str, int]) -> None:
    report = context.report
    total_bound = sum(bound.values())
    used, exhausted, seconds, duplicates = allocation(context, market)
    orders = len(market.orders)  # type: ignore[attr-defined]
    one_each = dict.fromkeys(COUNTRIES, 1)
    report.add(
        Figure(
            "3",
            f"numbers used: conversation_create in PIN mode always, pool = one number per country ({exhausted} x 409)",
            sum(used.values()),
            "numbers",
            "lower bound",
            total_bound,
            f"{sum(used.values()) / total_bound:.4f}x; per country {used}",
            "= 1 per country, 0 refused",
            used == one_each and exhausted == 0,
        )
    )
    report.add(
        Figure(
            "3",
            "PINs held twice by open participants of one number (PIN mode always)",
            duplicates,
            "",
            target="0",
            met=duplicates == 0,
        )
    )
    report.note(
        "3",
        f"PIN mode always: conversation_create took {seconds:.1f} s for {orders:,} orders "
        f"({seconds / orders * 1000:.2f} ms each, one process, pool of 2)",
    )

    timings = round_trips(context, samples=context.sizes.pin_round_trips)
    if timings.wrong:
        report.note("3", f"PIN calls that did not go as expected: {len(timings.wrong)} ({timings.wrong[:3]})")
    pair50, pair99 = load.percentile(timings.pair, 50), load.percentile(timings.pair, 99)
    for q, pair_q in ((50, pair50), (99, pair99)):
        value = load.percentile(timings.pin_call, q)
        report.add(
            Figure(
                "3",
                f"PIN call p{q}: answer + input round trip over HTTP, one call at a time "
                f"({len(timings.pin_call):,} calls; answer alone p{q} {load.percentile(timings.prompt, q):.3g} ms, "
                f"input alone p{q} {load.percentile(timings.connect, q):.3g} ms)",
                value,
                "ms",
                "a pair caller's answer, same loop",
                pair_q,
                f"{value / pair_q:.2f}x" if pair_q else "",
            )
        )
