"""Load generators, all on loopback.

- ``wrk_run``: wrk (Debian's), closed loop at a fixed connection count, for peak
  throughput; a Lua script varies the request.
- ``open_loop``: a constant-rate, open-loop driver in the manner of wrk2: request i is
  due at ``start + i / rate`` whatever happened to earlier ones, and its latency runs
  from that due time, not from when it was sent, so a stalled server is charged for the
  queue it builds (no coordinated omission). It is ``openloop.c``, built with the
  machine's C compiler on first use (into ``var/bench/``); without one, the same loop in
  asyncio, which costs about four times as much CPU on the cores the server shares.
- ``closed_loop``: N concurrent clients, each sending its next request as soon as the
  previous one is answered (the API-creation benchmark's "50 concurrent clients").
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    # wrk reports its own percentiles; the Python drivers fill latencies_ms instead.
    reported: dict[float, float] = field(default_factory=dict)
    driver: str = ""  # which open-loop driver ran, and its own CPU in seconds
    driver_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        if q in self.reported:
            return self.reported[q]
        return percentile(self.latencies_ms, q)

    @property
    def failures(self) -> int:
        return self.errors + sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


# --- wrk -------------------------------------------------------------------------

WRK_SCRIPT = Path(__file__).with_name("answer.lua")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_run(
    *, url: str, connections: int, seconds: float, script: Path | None = None, script_args: list[str] | None = None
) -> LoadResult:
    """Run wrk with one thread (the other core serves) and parse its report."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return _wrk_parse(out)


def _wrk_parse(out: str) -> LoadResult:
    requests_match = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if not requests_match:
        raise RuntimeError(f"cannot read wrk's report:\n{out}")
    requests = int(requests_match.group(1))
    seconds = float(requests_match.group(2)) * _UNITS[requests_match.group(3)] / 1000
    reported = {
        float(q): float(value) * _UNITS[unit]
        for q, value, unit in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    }
    result = LoadResult(requests=requests, seconds=seconds, reported=reported)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        result.statuses[500] += int(non_2xx.group(1))  # wrk does not say which; counted as failures
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        result.errors = sum(int(n) for n in socket_errors.groups())
    result.statuses[200] += requests - result.statuses[500]
    return result


# --- asyncio drivers -----------------------------------------------------------------


def get_request(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()


def post_request(path: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


class _Exchange(asyncio.Protocol):
    """One request on its own connection, as cheap in CPU as asyncio allows (no streams)."""

    def __init__(self, request: bytes, done: asyncio.Future[tuple[int, bytes]]) -> None:
        self.request = request
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        response = _complete_response(self.buffer)
        if response is not None and not self.done.done():
            self.done.set_result(response)
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        response = _complete_response(self.buffer, eof=True)
        if response is None:
            self.done.set_exception(exc or ConnectionError("connection closed before a full response"))
        else:
            self.done.set_result(response)


def _complete_response(buffer: bytearray, *, eof: bool = False) -> tuple[int, bytes] | None:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end])
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    body = bytes(buffer[end + 4 :])
    if match:
        length = int(match.group(1))
        return (status, body[:length]) if len(body) >= length else None
    return (status, body) if eof else None


async def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Exchange(request, done), HOST, port)
    try:
        return await done
    finally:
        transport.close()


async def _open_loop(*, port: int, make: Callable[[int], bytes], rate: float, seconds: float) -> LoadResult:
    loop = asyncio.get_running_loop()
    total = max(1, int(rate * seconds))
    result = LoadResult(requests=0, seconds=0.0)
    start = loop.time() + 0.05
    last_done = start

    async def one(i: int, due: float) -> None:
        nonlocal last_done
        try:
            status, _ = await asyncio.wait_for(_exchange(port, make(i)), timeout=10)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            return
        done = loop.time()
        last_done = max(last_done, done)
        result.statuses[status] += 1
        result.latencies_ms.append((done - due) * 1000)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    result.requests = sum(result.statuses.values())
    result.seconds = last_done - start
    return result


@contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """Keep the driver's own garbage collector from stalling it mid-measurement.

    This process holds Django and the benchmark data: a full collection here took 60 to
    80 ms, and every request due meanwhile was charged for it as server latency.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def open_loop(*, port: int, make: Callable[[int], bytes], rate: float, seconds: float) -> LoadResult:
    """Send ``rate`` requests a second for ``seconds``; latency from each request's due time."""
    binary = openloop_binary()
    if binary is None:
        before = time.process_time()
        with _no_collector_pauses():
            result = asyncio.run(_open_loop(port=port, make=make, rate=rate, seconds=seconds))
        result.driver, result.driver_cpu_s = "asyncio", time.process_time() - before
        return result
    total = max(1, int(rate * seconds))
    with tempfile.NamedTemporaryFile(prefix="bench-requests-", suffix=".bin") as requests:
        for i in range(total):
            request = make(i)
            requests.write(b"%d\n" % len(request) + request)
        requests.flush()
        run = subprocess.run(
            [str(binary), str(port), repr(rate), requests.name],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
    if run.returncode != 0:
        raise RuntimeError(f"the open-loop driver failed ({run.returncode}): {run.stderr.strip()}")
    return parse_openloop(run.stdout)


def parse_openloop(out: str) -> LoadResult:
    """Read ``openloop``'s report: a header of elapsed and CPU microseconds, then "status latency" per request."""
    header, *lines = out.splitlines()
    elapsed_us, user_us, system_us = (int(x) for x in header.split())
    result = LoadResult(requests=0, seconds=elapsed_us / 1e6, driver="C", driver_cpu_s=(user_us + system_us) / 1e6)
    for line in lines:
        status, latency_us = (int(x) for x in line.split())
        if status == 0:
            result.errors += 1
            continue
        result.statuses[status] += 1
        result.latencies_ms.append(latency_us / 1000)
    result.requests = sum(result.statuses.values())
    return result


OPENLOOP_SOURCE = Path(__file__).with_name("openloop.c")
OPENLOOP_FLAGS = ("-O2",)
# Built inside the checkout (var/ is git-ignored), not in a shared temp directory where
# anyone could leave a program under the predictable name for the benchmark to run.
OPENLOOP_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"


@functools.cache
def openloop_binary() -> Path | None:
    """``openloop.c`` built once per version of the source, compiler and flags (in
    ``var/bench/``); None, with a warning, when it cannot be built or run here (no
    compiler, no C library headers, a ``noexec`` mount): the asyncio driver stands in."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    key = hashlib.sha256(OPENLOOP_SOURCE.read_bytes() + repr((compiler, OPENLOOP_FLAGS)).encode()).hexdigest()[:16]
    binary = OPENLOOP_DIR / f"openloop-{key}"
    try:
        if not binary.exists():
            OPENLOOP_DIR.mkdir(parents=True, exist_ok=True)
            # A name of this process's own: two test workers may build at once.
            partial = binary.with_suffix(f".{os.getpid()}.{time.time_ns()}")
            try:
                subprocess.run(
                    [compiler, *OPENLOOP_FLAGS, "-o", str(partial), str(OPENLOOP_SOURCE)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                partial.replace(binary)
            finally:
                partial.unlink(missing_ok=True)
        # Without arguments it prints its usage and exits 2: proof that it can run here.
        if subprocess.run([str(binary)], capture_output=True, check=False).returncode != 2:
            raise OSError(f"{binary} does not run as built")
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"bench: the C open-loop driver is unavailable, asyncio stands in: {detail}", file=sys.stderr)
        return None
    return binary


async def _closed_loop(
    *,
    port: int,
    make: Callable[[int], bytes],
    clients: int,
    total: int | None,
    seconds: float | None,
    keep: Callable[[int, bytes], None] | None,
) -> LoadResult:
    result = LoadResult(requests=0, seconds=0.0)
    counter = itertools.count() if total is None else iter(range(total))
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    async def client() -> None:
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            sent = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(_exchange(port, make(i)), timeout=30)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                continue
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            result.statuses[status] += 1
            if keep is not None:
                keep(status, body)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - began
    result.requests = sum(result.statuses.values())
    return result


def closed_loop(
    *,
    port: int,
    make: Callable[[int], bytes],
    clients: int,
    total: int | None = None,
    seconds: float | None = None,
    keep: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    """``clients`` concurrent clients share ``total`` requests (or run for ``seconds``), each waiting for its answer."""
    with _no_collector_pauses():
        return asyncio.run(_closed_loop(port=port, make=make, clients=clients, total=total, seconds=seconds, keep=keep))
