"""Where the answer webhook's CPU goes: ``scripts/bench --profile [--smoke] [--markdown FILE]``.

Method (issue 17):

- The data and the load are benchmark 1's: ``bench.answer.seed`` (open conversations,
  analyzed), random known callers from ``bench.answer.callers_file``, requests signed like
  Vonage's, wrk at the benchmark's 16 connections (``bench.answer.drive``), the same
  gunicorn (sync workers, cores + 1) and settings.
- **Profiled runs**: gunicorn with ``bench/profile_gunicorn.py``, whose hooks make each
  worker profile itself with ``cProfile.Profile(time.process_time)`` (CPU time, so waiting
  on PostgreSQL or the socket costs nothing) from the moment Django is loaded until it
  exits, then dump its statistics. One server for ``/webhooks/answer``, another for
  ``/bench/bare``; the workers' files are added up with ``pstats``.
- **Unprofiled run**: the profiler inflates every call (more so for code of many small
  calls), so absolute profiled times are not the product's. A server without it measures
  the workers' CPU per request from ``/proc`` (``bench.server.CpuMeter``, best of rounds
  alternating answer and bare, after a warm-up), and the PostgreSQL backends' CPU per
  request beside it. Each part's µs per request is its **share** of the profiled CPU
  times that unprofiled CPU per request.
- **Parts** (``BUCKETS``): a tree of named functions. A part's time is the cumulative
  (inclusive) time of its functions, or of a function called from a given caller
  (``"caller -> callee"``), or a function's own time (``"self name"``), less any ``-``
  entries; a row shows what is left after its nested parts are taken out, so no time
  counts twice and the rows add up to the whole. A configured function that no profile
  saw is printed by name: a rename shows up instead of a silent zero. The answer's 25
  functions of most own time follow, as a second table.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import pstats
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import answer, load, server
from bench.context import Context
from bench.profile_gunicorn import PROFILE_DIR_ENV

TITLE = "Profile of the answer path: where the workers' CPU goes"
CONFIG = Path(__file__).with_name("profile_gunicorn.py")
PATHS = {"answer": "/webhooks/answer", "bare": "/bench/bare"}


@dataclass(frozen=True)
class Bucket:
    """A part of the request. ``parts``: ``"dotted.name"`` (cumulative time),
    ``"caller -> callee"`` (the callee's time when ``caller`` called it), ``"self dotted.name"``
    (own time only); ``"path/file.py:name"`` names a closure; a leading ``"-"`` subtracts."""

    label: str
    parts: tuple[str, ...]
    children: tuple[Bucket, ...] = ()


_INNER = "django/core/handlers/exception.py:inner"  # a closure: named by its file


def _own(method: str) -> tuple[str, ...]:
    """A middleware written as ``__call__``: its time, less the rest of the chain it calls."""
    return (method, f"-{method} -> {_INNER}")


_MIXIN = "django.utils.deprecation.MiddlewareMixin.__call__"
_CSRF = "django CsrfViewMiddleware"
_JSON_RESPONSE = "django.http.response.JsonResponse.__init__"
_HANDLER = "django.core.handlers.wsgi.WSGIHandler.__call__"
_SEND = "django.dispatch.dispatcher.Signal.send"
_BROWSERLESS = "config.middleware.BrowserlessRoutesMiddleware"


def _django(label: str, middleware: str, *methods: str) -> Bucket:
    """A middleware of Django's kind (MiddlewareMixin): the time of its process_* methods."""
    return Bucket(label, tuple(f"{middleware}.{method}" for method in methods))


# The tree of parts, innermost first so that each can name its nested parts. Whatever
# no nested part names is left in its parent's row; what is outside every request, in
# the first row (the worker's loop).
ROUTE_READ = Bucket(
    "route read (proxy.selectors.route_for_call): own",
    ("proxy.selectors.route_for_call",),
    (
        Bucket(
            "the read (config.postgres fetch_row): libpq call and its row",
            ("config.postgres.base.DatabaseWrapper.fetch_row",),
            # The request's first query checks the persistent connection (CONN_HEALTH_CHECKS).
            (
                Bucket(
                    "connection health check (is_usable)",
                    ("django.db.backends.postgresql.base.DatabaseWrapper.close_if_health_check_failed",),
                ),
            ),
        ),
        Bucket("model instances (_instance)", ("proxy.selectors._instance", "proxy.selectors._instance_from")),
    ),
)
ANSWER_VIEW = Bucket(
    "answer view: answer_call, outcome, debug log (own)",
    # Its response is counted with the bare view's, in the row below.
    ("webhooks.views.answer", "-webhooks.views._ncco_response"),
    (
        Bucket("reading the payload (webhooks.payloads.request_payload)", ("webhooks.payloads.request_payload",)),
        Bucket("number parsing (proxy.phone.from_webhook)", ("proxy.phone.from_webhook",)),
        ROUTE_READ,
        Bucket("building the NCCO (proxy.ncco.ncco_for_route)", ("proxy.ncco.ncco_for_route",)),
    ),
)
VIEW_DISPATCH = Bucket(
    "view dispatch: view decorators, response checks (own)",
    # Django's handler for the bare view; webhooks are dispatched by BrowserlessRoutesMiddleware.
    ("django.core.handlers.base.BaseHandler._get_response", f"{_BROWSERLESS}._view_response"),
    (
        Bucket(
            "URL resolving",
            (
                "django.core.handlers.base.BaseHandler.resolve_request",
                f"{_BROWSERLESS}._resolve",
            ),
        ),
        Bucket(_CSRF, ("django.middleware.csrf.CsrfViewMiddleware.process_view",)),
        Bucket(
            "signature check (webhooks.signatures.verify_voice_webhook)", ("webhooks.signatures.verify_voice_webhook",)
        ),
        ANSWER_VIEW,
        Bucket(
            "the response: JsonResponse, or the webhooks' own (own)",
            (_JSON_RESPONSE, "webhooks.views._ncco_response"),
            (Bucket("JSON encoding (json.dumps)", ("json.dumps",)),),
        ),
    ),
)
# Each middleware's own cost, side by side: a __call__ middleware's time less the rest of
# the chain it calls; a MiddlewareMixin's, its process_* methods (the mixin's own calls nest
# into each other, so their time goes in one row of plumbing).
MIDDLEWARE = Bucket(
    "middleware chain: plumbing left over (hasattr, ...)",
    (f"django.core.handlers.base.BaseHandler.get_response -> {_INNER}",),
    (
        Bucket(
            "Django middleware plumbing (MiddlewareMixin, convert_exception_to_response)",
            (f"self {_MIXIN}", f"self {_INNER}"),
        ),
        Bucket("proxy TrustedProxyMiddleware", _own("proxy.middleware.TrustedProxyMiddleware.__call__")),
        Bucket(
            "config RequestLogMiddleware (own: request id, timing, header)",
            _own("config.middleware.RequestLogMiddleware.__call__"),
            (
                Bucket("its metrics (config.metrics.observe_request)", ("config.metrics.observe_request",)),
                Bucket(
                    "its log line (logging)",
                    ("config.middleware.RequestLogMiddleware.__call__ -> logging.Logger.log",),
                ),
            ),
        ),
        _django(
            "django SecurityMiddleware",
            "django.middleware.security.SecurityMiddleware",
            "process_request",
            "process_response",
        ),
        Bucket("whitenoise WhiteNoiseMiddleware", _own("whitenoise.middleware.WhiteNoiseMiddleware.__call__")),
        Bucket("proxy RequestSizeLimitMiddleware", _own("proxy.middleware.RequestSizeLimitMiddleware.__call__")),
        Bucket("config BrowserlessRoutesMiddleware (own)", _own(f"{_BROWSERLESS}.__call__")),
        _django(
            "django SessionMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "process_request",
            "process_response",
        ),
        _django(
            "django CommonMiddleware",
            "django.middleware.common.CommonMiddleware",
            "process_request",
            "process_response",
        ),
        # Its process_view runs in view dispatch, below: the two rows are shown as one.
        _django(_CSRF, "django.middleware.csrf.CsrfViewMiddleware", "process_request", "process_response"),
        _django(
            "django AuthenticationMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "process_request",
        ),
        _django(
            "django MessageMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "process_request",
            "process_response",
        ),
        _django(
            "django XFrameOptionsMiddleware (clickjacking)",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
            "process_response",
        ),
        Bucket("axes AxesMiddleware", _own("axes.middleware.AxesMiddleware.__call__")),
        VIEW_DISPATCH,
    ),
)
DJANGO_HANDLER = Bucket(
    "Django WSGIHandler: request object, get_response, headers (own)",
    (_HANDLER, f"-{_HANDLER} -> {_SEND}"),  # request_started is counted with request_finished
    (
        Bucket("gunicorn: start_response (headers)", (f"{_HANDLER} -> gunicorn.http.wsgi.Response.start_response",)),
        MIDDLEWARE,
    ),
)
BUCKETS: tuple[Bucket, ...] = (
    Bucket(
        "gunicorn: response writing, socket close (request handling, own)",
        ("gunicorn.workers.sync.SyncWorker.handle",),
        (
            Bucket("gunicorn: HTTP request parsing", ("gunicorn.http.parser.Parser.__next__",)),
            Bucket("gunicorn: WSGI environ", ("gunicorn.http.wsgi.create",)),
            Bucket(
                "request_started / request_finished signals (dispatch, other receivers)",
                (
                    f"{_HANDLER} -> {_SEND}",
                    # request_finished: sent when gunicorn closes the response.
                    "gunicorn.workers.sync.SyncWorker.handle_request -> django.http.response.HttpResponseBase.close",
                ),
                (Bucket("close_old_connections", (f"{_SEND} -> django.db.close_old_connections",)),),
            ),
            DJANGO_HANDLER,
        ),
    ),
)

OUTSIDE = "gunicorn worker loop outside requests (accept, select, heartbeat)"

Key = tuple[str, int, str]  # pstats' (file, first line, name)


# --- reading the profiles --------------------------------------------------------------


class Profile:
    """The workers' statistics of one server, added up, and the time of each named part."""

    def __init__(self, files: list[Path], requests: int) -> None:
        self.stats: dict[Key, Any] = pstats.Stats(*(str(f) for f in files)).stats if files else {}  # type: ignore[attr-defined]
        self.total = sum(row[2] for row in self.stats.values())
        self.requests = requests  # wrk's count of the requests served while profiling
        self.seen: set[str] = set()  # configured names this profile has

    def time(self, part: str) -> float:
        """Seconds of one entry of ``Bucket.parts`` (negative for a ``-`` entry)."""
        sign = -1.0 if part.startswith("-") else 1.0
        name = part.lstrip("-")
        if " -> " in name:
            caller, callee = name.split(" -> ")
            callers = set(self.keys(caller))
            seconds = 0.0
            for key in self.keys(callee):
                for edge_caller, edge in self.stats[key][4].items():
                    if edge_caller in callers:
                        seconds += edge[3]  # the callee's cumulative time under this caller
                        self.seen.add(name)
            return sign * seconds
        own = name.startswith("self ")
        name = name.removeprefix("self ")
        keys = self.keys(name)
        if keys:
            self.seen.add(name)
        return sign * sum(self.stats[k][2 if own else 3] for k in keys)

    def keys(self, name: str) -> list[Key]:
        """The keys of this profile a configured name stands for (none when it never ran)."""
        if ":" in name:  # a closure (no import path): its file and its name
            suffix, function = name.rsplit(":", 1)
            return [k for k in self.stats if k[0].endswith("/" + suffix) and k[2] == function]
        key = _import_key(name)
        return [key] if key is not None and key in self.stats else []


_imported: dict[str, Key | None] = {}


def _import_key(name: str) -> Key | None:
    """The pstats key of ``dotted.name``, by importing it (decorators unwrapped); None if gone."""
    if name not in _imported:
        _imported[name] = _resolve(name)
    return _imported[name]


def _resolve(name: str) -> Key | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                target = inspect.unwrap(getattr(target, attr))
        except AttributeError:
            return None
        code = getattr(target, "__code__", None)
        if code is None:
            return None
        return (code.co_filename, code.co_firstlineno, code.co_name)
    return None


def configured_names(buckets: tuple[Bucket, ...] = BUCKETS) -> Iterator[str]:
    for bucket in buckets:
        for part in bucket.parts:
            yield part.lstrip("-").removeprefix("self ")
        yield from configured_names(bucket.children)


# --- the breakdown ---------------------------------------------------------------------


@dataclass
class Row:
    label: str
    depth: int
    seconds: dict[str, float] = field(default_factory=dict)  # exclusive, per target


def breakdown(profiles: dict[str, Profile]) -> list[Row]:
    """One row per label, in tree order: each part's time less its nested parts'."""
    rows: dict[str, Row] = {}
    outside = Row(OUTSIDE, 0)
    rows[OUTSIDE] = outside

    def walk(buckets: tuple[Bucket, ...], depth: int) -> dict[str, float]:
        inclusive_sum = dict.fromkeys(profiles, 0.0)
        for bucket in buckets:
            row = rows.setdefault(bucket.label, Row(bucket.label, depth))  # before its nested rows
            inclusive = {name: sum(p.time(part) for part in bucket.parts) for name, p in profiles.items()}
            nested = walk(bucket.children, depth + 1)
            for name in profiles:
                row.seconds[name] = row.seconds.get(name, 0.0) + inclusive[name] - nested[name]
                inclusive_sum[name] += inclusive[name]
        return inclusive_sum

    top = walk(BUCKETS, 0)
    for name, profile in profiles.items():
        outside.seconds[name] = profile.total - top[name]
    return list(rows.values())


@dataclass
class Measured:
    requests_profiled: dict[str, int]
    worker_ms: dict[str, float]  # unprofiled, per request
    database_ms: dict[str, float]
    requests_measured: dict[str, int]


def table(profiles: dict[str, Profile], measured: Measured) -> str:
    rows = breakdown(profiles)

    def share(row: Row, name: str) -> float:
        total = profiles[name].total
        return row.seconds.get(name, 0.0) / total if total else math.nan

    def us(row: Row, name: str) -> str:
        return f"{share(row, name) * measured.worker_ms[name] * 1000:,.1f}"

    lines = [
        "| part of the request | answer: share of worker CPU | answer: µs/request | bare: share | bare: µs/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {'· ' * row.depth}{row.label} | {share(row, 'answer'):.1%} | {us(row, 'answer')} "
            f"| {share(row, 'bare'):.1%} | {us(row, 'bare')} |"
        )
    worker = {name: measured.worker_ms[name] * 1000 for name in PATHS}
    database = {name: measured.database_ms[name] * 1000 for name in PATHS}
    lines += [
        f"| **gunicorn workers, CPU per request (unprofiled)** | 100% | **{worker['answer']:,.0f}** "
        f"| 100% | **{worker['bare']:,.0f}** |",
        f"| PostgreSQL backends, CPU per request (unprofiled) | | {database['answer']:,.0f} | "
        f"| {database['bare']:,.0f} |",
        f"| requests profiled (wrk) / measured unprofiled | | {measured.requests_profiled['answer']:,} / "
        f"{measured.requests_measured['answer']:,} | | {measured.requests_profiled['bare']:,} / "
        f"{measured.requests_measured['bare']:,} |",
        # How much the profiler inflates: the larger, the more the shares lean to code of many calls.
        "| workers, CPU per request under the profiler (not used for µs) | "
        + " | ".join(f"| {_profiled_us(profiles[n], measured.worker_ms[n])}" for n in PATHS)
        + " |",
    ]
    for name, profile in profiles.items():
        # The rows split the whole profile: anything else means a part is counted twice.
        if abs(sum(row.seconds.get(name, 0.0) for row in rows) - profile.total) > 0.001 * profile.total:
            lines.append(f"\nThe {name} rows do not add up to its profile's total {profile.total:.3f} s")
    negative = [row.label for row in rows if any(s < -0.005 * profiles[n].total for n, s in row.seconds.items())]
    if negative:
        lines.append(f"\nNegative rows (a nested part is not inside its parent): {negative}")
    return "\n".join(lines)


def _profiled_us(profile: Profile, unprofiled_ms: float) -> str:
    if not profile.requests:
        return "n/a"
    us = profile.total / profile.requests * 1e6
    return f"{us:,.0f} ({us / (unprofiled_ms * 1000):.1f}x)"


def top_functions(profile: Profile, worker_ms: float, count: int = 25) -> str:
    """The functions of most own time (tottime), with their calls and cumulative share."""
    lines = [
        "| function (own time) | calls per request | share of worker CPU | µs/request | cumulative share |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = sorted(profile.stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    requests = max(1, profile.requests)
    for (filename, line, function), (_, calls, own, cumulative, _) in rows:
        where = _short(filename)
        label = f"{where}:{line}({function})" if where != "~" else function
        share = own / profile.total
        lines.append(
            f"| `{label}` | {calls / requests:.1f} | {share:.1%} | {share * worker_ms * 1000:.1f} "
            f"| {cumulative / profile.total:.1%} |"
        )
    return "\n".join(lines)


def _short(filename: str) -> str:
    """A file's path from its package: site-packages, this repository or the standard library."""
    for prefix in (r"^.*/site-packages/", rf"^{re.escape(str(server.ROOT))}/", r"^.*/lib/python3\.\d+/"):
        if re.search(prefix, filename):
            return re.sub(prefix, "", filename)
    return filename


# --- the runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileSizes:
    warmup_seconds: float
    measure_seconds: float  # each unprofiled round
    measure_rounds: int
    profile_seconds: float  # each profiled server


FULL = ProfileSizes(warmup_seconds=3, measure_seconds=5, measure_rounds=2, profile_seconds=12)
SMOKE = ProfileSizes(warmup_seconds=0, measure_seconds=1, measure_rounds=1, profile_seconds=1)


def run(context: Context) -> str:
    """Seed, measure, profile, print both tables; the Markdown of the two."""
    sizes = SMOKE if context.smoke else FULL
    # Other work on the machine inflates CPU per request too (caches, frequency): say how busy it was.
    load_before = os.getloadavg()
    connections = context.sizes.peak_connections
    pool = answer.seed(context, context.sizes.answer_conversations)
    callers = answer.callers_file(
        context, pool=pool, upto=context.sizes.answer_conversations, count=5000, name="answer.txt"
    )
    auth = answer.signed_headers()["Authorization"]
    env = context.server_env

    def drive(s: server.Server, path: str, seconds: float, seed: int) -> load.LoadResult:
        return answer.drive(
            s, path=path, callers=callers, auth=auth, connections=connections, seconds=seconds, seed=seed
        )

    # Unprofiled: the CPU per request the shares are scaled to; rounds alternate, best kept.
    worker_ms: dict[str, list[float]] = {name: [] for name in PATHS}
    database_ms: dict[str, list[float]] = {name: [] for name in PATHS}
    measured_requests = dict.fromkeys(PATHS, 0)
    with server.gunicorn(env=env, workers=context.workers, log_path=context.scratch / "gunicorn.log") as s:
        query = callers.read_text().splitlines()[0]
        actions = answer.route_check(s.base_url, query, answer.signed_headers())
        if "connect" not in actions:
            print(f"   a known caller got {actions!r}, not a connect: the profile is of the wrong path", flush=True)
        for path in PATHS.values():
            if sizes.warmup_seconds:
                drive(s, path, sizes.warmup_seconds, context.seed + 1)
        for r in range(sizes.measure_rounds):
            for name, path in PATHS.items():
                meter = server.CpuMeter(s)
                meter.start()
                result = drive(s, path, sizes.measure_seconds, context.seed + r)
                meter.stop()
                served = result.requests + result.errors
                measured_requests[name] += served
                worker_ms[name].append(meter.workers / served * 1000 if served else math.nan)
                database_ms[name].append(meter.database / served * 1000 if served else math.nan)
                print(
                    f"   unprofiled {name}: {result.rate:,.0f} req/s, workers {worker_ms[name][-1]:.3f} ms CPU a "
                    f"request, PostgreSQL {database_ms[name][-1]:.3f} ms; {result.failures} failed",
                    flush=True,
                )

    # Profiled: one server per path, so each profile holds one path's requests only.
    profiles: dict[str, Profile] = {}
    profiled_requests: dict[str, int] = {}
    for name, path in PATHS.items():
        directory = context.scratch / f"profile-{name}"
        directory.mkdir()
        extra = ["--config", str(CONFIG)]
        with server.gunicorn(
            env={**env, PROFILE_DIR_ENV: str(directory)},
            workers=context.workers,
            log_path=context.scratch / "gunicorn-profile.log",
            extra_args=extra,
        ) as s:
            result = drive(s, path, sizes.profile_seconds, context.seed + 7)
        # The workers write their files as they exit, which gunicorn() waited for.
        files = sorted(directory.glob("worker-*.prof"))
        if len(files) != context.workers:
            print(f"   {len(files)} profiles of {context.workers} workers in {directory}", flush=True)
        profiles[name] = Profile(files, result.requests)
        profiled_requests[name] = result.requests
        print(
            f"   profiled {name}: {result.requests:,} requests ({result.rate:,.0f} req/s under the profiler), "
            f"{result.failures} failed; {profiles[name].total:.2f} s worker CPU profiled",
            flush=True,
        )

    measured = Measured(
        requests_profiled=profiled_requests,
        worker_ms={name: min(values) for name, values in worker_ms.items()},
        database_ms={name: min(values) for name, values in database_ms.items()},
        requests_measured=measured_requests,
    )
    breakdown_table = table(profiles, measured)
    top = top_functions(profiles["answer"], measured.worker_ms["answer"])
    missing = _never_seen(profiles)
    text = (
        f"### Where the CPU of a request goes ({context.workers} sync workers, {connections} connections, "
        f"load average before {_load(load_before)}, after {_load(os.getloadavg())})\n\n"
        + breakdown_table
        + "\n\n### The answer's top 25 functions by own time (tottime)\n\n"
        + top
        + ("\n\n" + missing if missing else "")
        + "\n"
    )
    print("\n" + text, flush=True)
    return text


def _load(average: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in average)


def _never_seen(profiles: dict[str, Profile]) -> str:
    """Configured names no profile saw, or that no longer import: a rename must not read as zero."""
    seen = set().union(*(p.seen for p in profiles.values()))
    gone = sorted({n for n in configured_names() if n not in seen})
    if not gone:
        return ""
    return "Configured but never seen in any profile (renamed? moved?): " + ", ".join(f"`{n}`" for n in gone)
