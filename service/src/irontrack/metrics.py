"""Prometheus metrics of the service (``prometheus-client``), correct across worker processes.

Granian/Uvicorn workers are separate processes. With ``PROMETHEUS_MULTIPROC_DIR`` set (the
systemd unit points it at a tmpfs directory, emptied when the slot starts) every process writes
its values to its own memory-mapped files there, and the separate listener
(:mod:`irontrack.cli.metrics`) merges them at scrape time. Without it (tests, ``make run``)
the metrics live in this process's default registry.

Hot-path cost: a multiprocess value update takes a lock and writes a memory-mapped file (a
request's histogram observation cost ~10 us here, 5-10 % of ``/ping``). So nothing on the hot
path touches prometheus-client: a request adds its latency to plain per-process bucket counts
(:class:`RequestRecorder`), L1 lookups are plain integers on the cache, the DB pool and hash pool
are sampled; :class:`Publisher` moves all of it into the metrics once per ``interval`` (1 s), so
a scrape sees at most a second-old picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import Scope

log = logging.getLogger("irontrack.metrics")

# Latency buckets (seconds): /ping answers in ~0.1 ms, a login hashes for ~50-100 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "unmatched"  # any path no route knows: one label value, bounded cardinality
PUBLISH_INTERVAL = 1.0

REQUESTS = Histogram(
    "irontrack_http_request_duration_seconds",
    "HTTP request latency by route template, method and status (its _count is the request count).",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
)
HASH_PENDING = Gauge(
    "irontrack_hash_jobs",
    "Argon2id jobs admitted and not finished (running + queued), summed over the workers.",
    multiprocess_mode="livesum",
)
HASH_CAPACITY = Gauge(
    "irontrack_hash_capacity",
    "Argon2id jobs the workers admit at most (threads + queue), summed over the workers.",
    multiprocess_mode="livesum",
)
HASH_WAIT = Histogram(
    "irontrack_hash_queue_wait_seconds",
    "Time an Argon2id job waited for a free hash thread.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HASH_REJECTED = Counter(
    "irontrack_hash_rejected_total",
    "Argon2id jobs refused with 503 because every thread and queue slot was taken.",
)
L1_LOOKUPS = Counter(
    "irontrack_l1_lookups_total",
    "Access-session lookups by result: hit (answered from the in-process L1), miss (read "
    "from Valkey while the L1 was live), bypass (L1 not live: Valkey read, nothing cached).",
    ("result",),
)
DB_POOL_IN_USE = Gauge(
    "irontrack_db_pool_checked_out",
    "Database connections checked out of the pool, summed over the workers.",
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW = Gauge(
    "irontrack_db_pool_overflow",
    "Connections open beyond the pool size (max_overflow), summed over the workers.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "irontrack_db_pool_size",
    "Configured pool size, summed over the workers.",
    multiprocess_mode="livesum",
)
VALKEY_ERRORS = Counter(
    "irontrack_valkey_errors_total",
    "Valkey commands that failed (connection lost, timeout, error reply), by operation.",
    ("operation",),
)


def route_template(scope: Scope) -> str:
    """The matched route's template (``/api/v1/access/me``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestRecorder:
    """Request latencies of this process in plain bucket counts, flushed into the histogram.

    ``record`` is the hot path: a dict lookup, a bisect and two additions. ``flush`` adds what
    was recorded since the last flush to the prometheus-client histogram children — the same
    per-bucket values ``Histogram.observe`` increments, in one update per bucket and label set.
    """

    BOUNDS = (*LATENCY_BUCKETS, math.inf)

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str, int], list[float]] = {}
        self._children: dict[tuple[str, str, int], Any] = {}

    def record(self, key: tuple[str, str, int], seconds: float) -> None:
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = [0.0] * (len(self.BOUNDS) + 1)
        entry[0] += seconds
        entry[1 + bisect_left(self.BOUNDS, seconds)] += 1

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for key, entry in pending.items():
            child = self._children.get(key)
            if child is None:
                route, method, status = key
                child = self._children[key] = REQUESTS.labels(route, method, str(status))
            child._sum.inc(entry[0])
            for bucket, count in zip(child._buckets, entry[1:], strict=True):
                if count:
                    bucket.inc(count)


RECORDER = RequestRecorder()


def request_observer(exact: tuple[str, ...] = ()) -> Callable[[Scope, int, float], None]:
    """``observe(scope, status, seconds)``: records one finished request under its route
    template. The edge paths (``/ping``, ``/me``) are answered before FastAPI's router and carry
    no ``route`` in their scope: they are exact paths, so the path is their template."""
    exact_paths = frozenset(exact)
    record = RECORDER.record

    def observe(scope: Scope, status: int, seconds: float) -> None:
        path = scope["path"]
        route = path if path in exact_paths else route_template(scope)
        record((route, scope["method"], status), seconds)

    return observe


class Publisher:
    """Publishes hot-path counts and sampled gauges once per ``interval`` from the event loop."""

    def __init__(self, interval: float = PUBLISH_INTERVAL) -> None:
        self.interval = interval
        self._sources: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, source: Callable[[], None]) -> None:
        self._sources.append(source)

    def publish(self) -> None:
        for source in self._sources:
            try:
                source()
            except Exception:  # a metric must never take the service down
                log.exception("publishing metrics failed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.publish()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="irontrack-metrics")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.publish()


class CountDelta:
    """Adds the growth of an integer attribute since the last publish to a counter."""

    def __init__(self, read: Callable[[], int], counter: Any) -> None:
        self._read = read
        self._counter = counter
        self._seen = read()

    def __call__(self) -> None:
        now = self._read()
        if now > self._seen:
            self._counter.inc(now - self._seen)
        self._seen = now


def l1_source(cache: Any) -> Callable[[], None]:
    """L1 hits/misses/bypasses (plain integers on the cache) into irontrack_l1_lookups_total."""
    deltas = [
        CountDelta(lambda: cache.hits, L1_LOOKUPS.labels("hit")),
        CountDelta(lambda: cache.misses, L1_LOOKUPS.labels("miss")),
        CountDelta(lambda: cache.bypasses, L1_LOOKUPS.labels("bypass")),
    ]

    def publish() -> None:
        for delta in deltas:
            delta()

    return publish


def db_pool_source(engine: Any, pool_size: int) -> Callable[[], None]:
    """The SQLAlchemy pool's checked-out and overflow counts, sampled."""
    DB_POOL_SIZE.set(pool_size)

    def publish() -> None:
        pool = engine.pool
        DB_POOL_IN_USE.set(pool.checkedout())
        DB_POOL_OVERFLOW.set(max(0, pool.overflow()))

    return publish


def hash_source(passwords: Any) -> Callable[[], None]:
    """Argon2id jobs in flight against the pool's capacity, sampled (the wait and rejections
    are recorded as they happen)."""
    HASH_CAPACITY.set(passwords.capacity)
    passwords.on_wait = HASH_WAIT.observe

    def publish() -> None:
        HASH_PENDING.set(passwords.pending)

    return publish


def valkey_errors_source(errors: Any) -> Callable[[], None]:
    """Valkey failures counted by operation (irontrack.sessions.ERRORS) into the counter."""
    seen: dict[str, int] = dict(errors)

    def publish() -> None:
        for operation, count in list(errors.items()):
            grown = count - seen.get(operation, 0)
            if grown > 0:
                VALKEY_ERRORS.labels(operation).inc(grown)
            seen[operation] = count

    return publish


def rejected_source(passwords: Any) -> Callable[[], None]:
    return CountDelta(lambda: passwords.rejected, HASH_REJECTED)
