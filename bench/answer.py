"""1. Answer webhook: peak throughput against a bare view, and p99 at half the peak rate.

Both views run in the same gunicorn, on the same database, under the same wrk; each
request is signed like Vonage's (HS256 JWT) and carries a random known caller of
``answer_conversations`` open conversations, with a fresh call uuid.

Then the answer with an intercept hook: the service's ``intercept_url`` points at an
endpoint on loopback that answers 204 at once (``bench/hook_server.py``, a process of its
own), and one connection alternates rounds of plain and intercepted answers: the p50 and
p99 of each, and what the hook adds.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import socket
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import db, load, reads
from bench.context import SIGNATURE_SECRET, Context
from bench.report import Figure, Report
from bench.server import ROOT, CpuMeter, Server

TITLE = "Answer webhook: throughput and latency against a bare view"
POOL_SIZE = 10
SERVICE_SLUG = "bench-answer"


def seed(context: Context, conversations: int) -> list[str]:
    """Truncate, seed ``conversations`` open conversations, return pool numbers."""
    db.truncate_all()
    service = db.service_create(slug=SERVICE_SLUG)
    pool = db.pool_seed(service=service, country="US", count=POOL_SIZE, base=db.US_POOL_BASE)
    db.conversations_seed(service=service, start=0, stop=conversations, pool=pool, expires_in=dt.timedelta(days=1))
    db.analyze()
    return pool


def callers_file(context: Context, *, pool: list[str], upto: int, count: int, name: str) -> Path:
    """``count`` random known callers among conversations 0..upto-1, as query strings."""
    rng = random.Random(context.seed + upto)
    lines = []
    for _ in range(count):
        i = rng.randrange(upto)
        real, proxy = db.seeded_participant(i, pool=pool, seller=rng.random() < 0.5)
        lines.append(f"from={real}&to={proxy}")
    path = context.scratch / name
    path.write_text("\n".join(lines) + "\n")
    return path


def signed_headers() -> dict[str, str]:
    from webhooks.signatures import sign_voice_webhook

    # Vonage signs GET requests with no payload_hash; a token stays valid 5 minutes.
    return {"Authorization": f"Bearer {sign_voice_webhook(body=b'', secret=SIGNATURE_SECRET)}"}


def route_check(base_url: str, query: str, headers: dict[str, str]) -> str:
    """The NCCO's first action for one known caller: the benchmark must measure a connect."""
    request = urllib.request.Request(f"{base_url}/webhooks/answer?{query}&uuid=bench-check", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        ncco = json.loads(response.read())
    return ",".join(step.get("action", "?") for step in ncco)


def request_maker(*, path: str, callers: list[str], auth: str, port: int, tag: str) -> Callable[[int], bytes]:
    """Request i of the Python drivers: like the wrk script's, signed, with a fresh call uuid."""

    def make(i: int) -> bytes:
        query = callers[i % len(callers)]
        target = f"{path}?{query}&uuid=bench-{tag}-{i}&conversation_uuid=CON-bench-{tag}-{i}"
        return load.get_request(target, port).replace(b"\r\n\r\n", f"\r\nAuthorization: {auth}\r\n\r\n".encode(), 1)

    return make


def drive(
    server: Server, *, path: str, callers: Path, auth: str, connections: int, seconds: float, seed: int
) -> load.LoadResult:
    """Closed loop at a fixed connection count: wrk when installed, else the Python driver."""
    if load.wrk_available() and seconds >= 1:  # wrk counts whole seconds
        return load.wrk_run(
            url=server.base_url + path,
            connections=connections,
            seconds=seconds,
            script=load.WRK_SCRIPT,
            script_args=[path, str(callers), str(seed), auth],
        )
    lines = callers.read_text().splitlines()
    random.Random(seed).shuffle(lines)
    make = request_maker(path=path, callers=lines, auth=auth, port=server.port, tag=f"cl{seed}{path[1:4]}")
    return load.closed_loop(port=server.port, make=make, clients=connections, seconds=seconds)


PATHS = {
    "bare": "/bench/bare",
    "signed": "/bench/signed",
    "one-read": "/bench/one-read",
    "route-read": "/bench/route-read",
    "route-table-read": "/bench/route-table-read",
    "webhook-minimum": "/bench/webhook/minimum",
    "answer": "/webhooks/answer",
}


@dataclass
class Peak:
    """The best of several interleaved rounds (other load on the machine only costs throughput)."""

    best: load.LoadResult
    cpu_ms: float  # server + database CPU per request, over all rounds
    rates: list[float]  # every round's, in order: round r of each path ran back to back


def peaks(context: Context, server: Server, *, callers: Path, auth: str) -> dict[str, Peak]:
    sizes = context.sizes
    rounds: dict[str, list[load.LoadResult]] = {name: [] for name in PATHS}
    cpu: dict[str, list[float]] = {name: [] for name in PATHS}
    run = functools.partial(drive, server, callers=callers, auth=auth, connections=sizes.peak_connections)
    if sizes.warmup_seconds:
        for path in PATHS.values():
            run(path=path, seconds=sizes.warmup_seconds, seed=context.seed + 1)
    for r in range(sizes.peak_rounds):
        # Interleaved, so that a burst of other work hurts every path alike.
        for name, path in PATHS.items():
            meter = CpuMeter(server)
            meter.start()
            result = run(path=path, seconds=sizes.peak_seconds, seed=context.seed + r)
            meter.stop()
            rounds[name].append(result)
            cpu[name].append(meter.per_request_ms(result.requests + result.errors))
    return {
        name: Peak(best=max(results, key=lambda x: x.rate), cpu_ms=min(cpu[name]), rates=[x.rate for x in results])
        for name, results in rounds.items()
    }


def _paired_median(report: Report, path: Peak, baseline: Peak, label: str) -> None:
    """The median of ``path``'s rate over ``baseline``'s, round by round (rounds where the
    baseline served nothing left out; no figure when that is all of them)."""
    ratios = [a / b for a, b in zip(path.rates, baseline.rates, strict=True) if b]
    if ratios:
        report.add(
            Figure(
                "1",
                label,
                statistics.median(ratios),
                "",
                comparison="per round: " + ", ".join(f"{r:.2f}" for r in ratios),
            )
        )


def run(context: Context) -> None:
    sizes = context.sizes
    pool = seed(context, sizes.answer_conversations)
    callers = callers_file(context, pool=pool, upto=sizes.answer_conversations, count=5000, name="answer.txt")
    with reads.prototype():
        _run(context, pool=pool, callers=callers)


def _run(context: Context, *, pool: list[str], callers: Path) -> None:
    sizes = context.sizes
    report = context.report
    # The intercept hook's endpoint is on loopback: the address guard must let it through.
    with context.server(VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET, CALLBACK_ALLOW_PRIVATE_NETWORKS="true") as server:
        headers = signed_headers()
        actions = route_check(server.base_url, callers.read_text().splitlines()[0], headers)
        if "connect" not in actions:
            report.note("1", f"a known caller got {actions!r}, not a connect: figures measure the wrong path")
        auth = headers["Authorization"]
        if not load.wrk_available():
            report.note("1", "wrk is not installed (apt-get install wrk): the Python driver stands in, slower")
        driver = "wrk" if load.wrk_available() and sizes.peak_seconds >= 1 else "python driver"
        measured = peaks(context, server, callers=callers, auth=auth)
        bare, signed, floor, route_read, route_table, minimum, answer = (measured[name] for name in PATHS)
        ratio = answer.best.rate / bare.best.rate if bare.best.rate else 0.0
        rounds = sizes.peak_rounds
        report.add(
            Figure(
                "1",
                f"answer webhook peak throughput ({driver}, {sizes.peak_connections} connections, "
                f"best of {sizes.peak_rounds})",
                round(answer.best.rate),
                "req/s",
                "bare view",
                round(bare.best.rate),
                f"ratio {ratio:.2f}",
                ">= 0.70 of bare",
                ratio >= 0.70,
            )
        )
        # Each round's pair ran within seconds of each other: the median of their ratios is
        # less at the mercy of one lucky or unlucky round than the best of each.
        _paired_median(
            report, answer, bare, f"answer webhook throughput / bare view, median of the {rounds} rounds' ratios"
        )
        # What the answer's own work costs beyond the two things no answer can skip (bench/urls.py).
        _paired_median(
            report,
            answer,
            minimum,
            f"answer webhook / the webhook minimum (signature check + one indexed read, served as the answer is), "
            f"median of the {rounds} rounds' ratios (CPU {answer.cpu_ms:.3g} / {minimum.cpu_ms:.3g} ms a request)",
        )
        # The route read against the prototype route table's, round by round (bench/reads.py).
        _paired_median(
            report,
            route_table,
            route_read,
            f"floor with a route table (prototype) / floor with the route read, median of the {rounds} rounds' "
            f"ratios (CPU {route_table.cpu_ms:.3g} / {route_read.cpu_ms:.3g} ms a request)",
        )
        for baseline, label in (
            (signed, f"ceiling: bare view + signature check, peak throughput (CPU {signed.cpu_ms:.3g} ms a request)"),
            (floor, f"floor: bare view + one indexed read, peak throughput (CPU {floor.cpu_ms:.3g} ms a request)"),
            (
                route_read,
                "floor: bare view + the answer's own route read (proxy.selectors.route_for_call), peak throughput "
                f"(CPU {route_read.cpu_ms:.3g} ms a request)",
            ),
            (
                route_table,
                "floor: bare view + a route table's read (prototype, bench/reads.py), peak throughput "
                f"(CPU {route_table.cpu_ms:.3g} ms a request)",
            ),
            (
                minimum,
                "floor: the webhook minimum, the answer's signature check + one indexed read + a constant NCCO "
                f"without the browser middleware, peak throughput (CPU {minimum.cpu_ms:.3g} ms a request)",
            ),
        ):
            report.add(
                Figure(
                    "1",
                    label,
                    round(baseline.best.rate),
                    "req/s",
                    "bare view",
                    round(bare.best.rate),
                    f"ratio {baseline.best.rate / bare.best.rate:.2f}" if bare.best.rate else "",
                )
            )
        report.add(
            Figure(
                "1",
                f"answer webhook CPU per request, server + database (one-read floor {floor.cpu_ms:.3g} ms)",
                answer.cpu_ms,
                "ms",
                "bare view",
                bare.cpu_ms,
                f"CPU ratio {bare.cpu_ms / answer.cpu_ms:.2f}" if answer.cpu_ms else "",
            )
        )
        for q in (50, 99):
            report.add(
                Figure(
                    "1",
                    f"answer webhook p{q} at peak",
                    answer.best.p(q),
                    "ms",
                    "bare view",
                    bare.best.p(q),
                    f"{answer.best.p(q) / bare.best.p(q):.2f}x" if bare.best.p(q) else "",
                )
            )
        failures = {name: peak.best.failures for name, peak in measured.items() if peak.best.failures}
        if failures:
            report.note("1", f"non-2xx or socket errors at peak: {failures}")

        rate = answer.best.rate / 2
        lines = callers.read_text().splitlines()

        def make(path: str) -> Callable[[int], bytes]:
            return request_maker(path=path, callers=lines, auth=auth, port=server.port, tag=f"ol{path[1:4]}")

        # Rounds alternate bare and answer; the quietest round of each is kept, as
        # for the peaks. The driver's own CPU is measured: it shares the two cores.
        steady_rounds: dict[str, list[load.LoadResult]] = {"bare": [], "answer": []}
        for _ in range(sizes.peak_rounds):
            for name, path in (("bare", "/bench/bare"), ("answer", "/webhooks/answer")):
                steady_rounds[name].append(
                    load.open_loop(
                        port=server.port,
                        make=make(path),
                        rate=rate,
                        seconds=sizes.steady_seconds / sizes.peak_rounds,
                    )
                )
        every_round = [x for rounds in steady_rounds.values() for x in rounds]
        driver_cpu = sum(x.driver_cpu_s for x in every_round)
        steady_bare = min(steady_rounds["bare"], key=lambda x: x.p(99))
        steady = min(steady_rounds["answer"], key=lambda x: x.p(99))
        worst = max(x.p(99) for x in steady_rounds["answer"])
        sent = sum(x.requests + x.errors for x in every_round)
        report.note(
            "1",
            f"open loop: p99 of the answer webhook per round {[round(x.p(99), 1) for x in steady_rounds['answer']]}"
            f" ms (worst {worst:.3g}); the {steady.driver} driver used {driver_cpu / sent * 1000:.3f} ms CPU a request",
        )
        for q in (50, 99):
            report.add(
                Figure(
                    "1",
                    f"answer webhook p{q} at half its peak ({rate:.0f} req/s, open loop)",
                    steady.p(q),
                    "ms",
                    "bare view, same rate",
                    steady_bare.p(q),
                    f"{steady.p(q) / steady_bare.p(q):.2f}x" if steady_bare.p(q) else "",
                    "< 10 ms" if q == 99 else "",
                    steady.p(99) < 10 if q == 99 else None,
                )
            )
        if steady.failures:
            report.note("1", f"open loop: {steady.failures} failed requests of {steady.requests + steady.errors}")
        report.note(
            "1",
            f"open loop achieved {steady.rate:.0f} req/s of {rate:.0f} asked "
            f"(bare: {steady_bare.rate:.0f}); {server.workers} gunicorn sync workers",
        )

        intercept_latency(context, server, lines=lines, auth=auth)
    # With the server stopped: each shape of read alone, on this process's connection.
    reads.run(context, pool=pool, answer_cpu_ms=answer.cpu_ms)


# --- The answer with an intercept hook --------------------------------------------------------------


@contextmanager
def hook_endpoint(log_path: Path) -> Iterator[str]:
    """``bench/hook_server.py`` in a process of its own, on a socket bound here; its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/intercept"
    fd = listener.fileno()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.hook_server", "--fd", str(fd)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[fd],
            start_new_session=True,
        )
    listener.close()
    try:
        request = urllib.request.Request(url, data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 204
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def intercept_set(url: str) -> None:
    """Point the benchmark service's intercept hook at ``url`` ("" removes it); the next answer sees it."""
    from proxy.models import Service

    Service.objects.filter(slug=SERVICE_SLUG).update(intercept_url=url)


def intercept_latency(context: Context, server: Server, *, lines: list[str], auth: str) -> None:
    """One connection, rounds of plain and intercepted answers interleaved; the quietest round of each."""
    from proxy.models import Call

    sizes = context.sizes
    rounds: dict[str, list[load.LoadResult]] = {"plain": [], "intercept": []}
    cpu: dict[str, list[float]] = {"plain": [], "intercept": []}
    seconds = sizes.hook_seconds / (2 * sizes.peak_rounds)
    with hook_endpoint(context.scratch / "hook-server.log") as url:
        try:
            for r in range(sizes.peak_rounds):
                for name in rounds:
                    intercept_set(url if name == "intercept" else "")
                    make = request_maker(
                        path="/webhooks/answer", callers=lines, auth=auth, port=server.port, tag=f"hk{name[0]}{r}"
                    )
                    meter = CpuMeter(server)
                    meter.start()
                    result = load.closed_loop(port=server.port, make=make, clients=1, seconds=seconds)
                    meter.stop()
                    rounds[name].append(result)
                    cpu[name].append(meter.per_request_ms(result.requests + result.errors))
        finally:
            intercept_set("")
    plain = min(rounds["plain"], key=lambda x: x.p(50))
    hooked = min(rounds["intercept"], key=lambda x: x.p(50))
    sent = sum(x.requests for x in rounds["intercept"])
    allowed = Call.objects.filter(hook="intercept", hook_outcome="allowed").count()
    context.report.note(
        "1",
        f"intercept hook: {allowed} of {sent} intercepted answers asked the hook and connected "
        f"(p50 per round {[round(x.p(50), 2) for x in rounds['intercept']]} ms, plain "
        f"{[round(x.p(50), 2) for x in rounds['plain']]} ms)",
    )
    for q in (50, 99):
        context.report.add(
            Figure(
                "1",
                f"answer webhook with an intercept hook on loopback answering at once, p{q} (1 connection)",
                hooked.p(q),
                "ms",
                "plain answer, same loop",
                plain.p(q),
                f"adds {hooked.p(q) - plain.p(q):.2f} ms",
            )
        )
    context.report.add(
        Figure(
            "1",
            "answer webhook with an intercept hook, CPU per request, server + database (hook endpoint excluded)",
            min(cpu["intercept"]),
            "ms",
            "plain answer",
            min(cpu["plain"]),
            f"adds {min(cpu['intercept']) - min(cpu['plain']):.2f} ms",
        )
    )
