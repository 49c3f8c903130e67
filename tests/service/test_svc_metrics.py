"""Prometheus metrics: recorded by every Granian worker process, merged by irontrack-metrics.

A real two-worker Granian server writes its metric files into a multiprocess directory (as
the systemd unit does); the real listener serves their sum. The tests read the exposition text
the way Prometheus does, and the per-process files one by one, so the workers' counts are
proved to add up to what the clients sent."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import me, signup_and_login
from harness import VENV_BIN, Server, Stack, free_port, wait_port
from irontrack.metrics import PUBLISH_INTERVAL
from prometheus_client.multiprocess import MultiProcessCollector

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Listener:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "irontrack-metrics"), "--dir", str(root), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 20, self.proc)

    def scrape(self) -> dict:
        answer = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10)
        assert answer.status_code == 200
        return parse(answer.text)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def metrics_root(stack: Stack) -> Path:
    root = stack.root / "metrics"
    root.mkdir()
    stack.account.own(root)
    return root


@pytest.fixture(scope="module")
def workers2(stack: Stack, metrics_root: Path) -> Iterator[Server]:
    slot = metrics_root / "blue"
    slot.mkdir()
    stack.account.own(slot)
    server = Server(
        stack.app_env(PROMETHEUS_MULTIPROC_DIR=str(slot), IRONTRACK_ACCESS_LOG="false"),
        stack.root,
        "metrics2",
        workers=2,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def listener(metrics_root: Path, workers2: Server) -> Iterator[Listener]:
    running = Listener(metrics_root)
    try:
        yield running
    finally:
        running.stop()


def _ping_new_connections(server: Server, count: int) -> None:
    """``count`` GET /ping, each on a new connection, 8 at a time (spreads over workers)."""

    def one(_: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            return http.get("/ping").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(count))) == {200}


def _ping_counts_per_file(slot: Path) -> list[float]:
    counts = []
    for path in sorted(slot.glob("histogram_*.db")):
        merged = parse_metrics(MultiProcessCollector.merge([str(path)], accumulate=True))
        counts.append(value(merged, "irontrack_http_request_duration_seconds_count", route="/ping"))
    return counts


def parse_metrics(metrics) -> dict:
    samples = {}
    for metric in metrics:
        for sample in metric.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _eventually(listener: Listener, check, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = listener.scrape()
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_two_workers_counts_add_up(workers2: Server, listener: Listener, metrics_root: Path):
    slot = metrics_root / "blue"
    count = "irontrack_http_request_duration_seconds_count"
    for round_ in range(5):
        time.sleep(PUBLISH_INTERVAL * 1.5)  # nothing left unpublished
        before = value(listener.scrape(), count, route="/ping")
        _ping_new_connections(workers2, 300)
        # Each worker publishes its counts once a second.
        want = before + 300
        after = _eventually(listener, lambda s, want=want: value(s, count, route="/ping") >= want)
        total = value(after, count, route="/ping")
        assert total - before == 300, f"round {round_}: {total - before} of 300 counted"
        assert (
            value(
                after, "irontrack_http_request_duration_seconds_count", route="/ping", status="200"
            )
            == total
        )
        per_worker = [c for c in _ping_counts_per_file(slot) if c > 0]
        assert sum(per_worker) == total, per_worker
        if len(per_worker) >= 2:
            break
    else:
        pytest.fail(f"every request was served by one worker: {per_worker}")
    # The histogram is whole: its +Inf bucket is its count, its sum is positive.
    assert (
        value(after, "irontrack_http_request_duration_seconds_bucket", route="/ping", le="+Inf")
        == total
    )
    assert value(after, "irontrack_http_request_duration_seconds_sum", route="/ping") > 0


def test_route_templates_bound_the_labels(workers2: Server, listener: Listener) -> None:
    with workers2.client() as http:
        for i in range(25):
            assert http.get(f"/no/such/path/{i}").status_code == 404
        assert http.head("/health").status_code in (200, 503)
        user = signup_and_login(http, "metrics-routes")
        assert me(http, user.access).status_code == 200
    samples = _eventually(
        listener,
        lambda s: value(s, "irontrack_http_request_duration_seconds_count", route="/health") >= 1,
    )
    routes = {
        dict(labels)["route"]
        for (name, labels) in samples
        if name == "irontrack_http_request_duration_seconds_count"
    }
    assert not any(r.startswith("/no/such") for r in routes), routes
    assert "unmatched" in routes
    count = "irontrack_http_request_duration_seconds_count"
    assert value(samples, count, route="unmatched", status="404") >= 25
    assert value(samples, count, route="/api/v1/access/signup", method="POST", status="201") >= 1
    assert value(samples, count, route="/api/v1/access/login", method="POST", status="200") >= 1
    assert value(samples, count, route="/api/v1/access/me", method="GET", status="200") >= 1
    assert value(samples, count, route="/health", method="HEAD") >= 1


def test_hash_l1_and_pool_metrics_move(workers2: Server, listener: Listener) -> None:
    time.sleep(PUBLISH_INTERVAL * 1.5)  # what earlier tests did is published by now
    before = listener.scrape()
    with workers2.client() as http:
        user = signup_and_login(http, "metrics-moves")  # two Argon2id jobs
        for _ in range(30):
            assert me(http, user.access).status_code == 200
    lookups = "irontrack_l1_lookups_total"
    waits = "irontrack_hash_queue_wait_seconds_count"

    def moved(samples: dict) -> bool:
        return (
            value(samples, waits) - value(before, waits) >= 2
            and value(samples, lookups) - value(before, lookups) >= 30
        )

    after = _eventually(listener, moved)  # published once a second by each worker
    assert value(after, waits) - value(before, waits) >= 2
    hits = value(after, lookups, result="hit") - value(before, lookups, result="hit")
    others = sum(
        value(after, lookups, result=r) - value(before, lookups, result=r)
        for r in ("miss", "bypass")
    )
    assert hits >= 20, (hits, others)
    assert hits + others == 30, (hits, others)
    # Gauges summed over the two live workers.
    assert value(after, "irontrack_hash_capacity") == 2 * (2 + 16)
    assert value(after, "irontrack_hash_jobs") == 0
    assert value(after, "irontrack_db_pool_size") == 2 * 10
    assert 0 <= value(after, "irontrack_db_pool_checked_out") <= 2 * 15
    assert value(after, "irontrack_db_pool_overflow") >= 0
    assert value(after, "irontrack_hash_rejected_total") == 0


def test_valkey_errors_are_counted(stack: Stack, metrics_root: Path, server_a: Server) -> None:
    """A worker whose Valkey is unreachable (a closed port) answers /me 503 and counts it."""
    with server_a.client() as http:
        user = signup_and_login(http, "metrics-valkey")
    slot = metrics_root / "broken"
    slot.mkdir()
    stack.account.own(slot)
    closed = free_port()
    server = Server(
        stack.app_env(
            PROMETHEUS_MULTIPROC_DIR=str(slot),
            IRONTRACK_VALKEY_URL=f"redis://127.0.0.1:{closed}/0",
            IRONTRACK_VALKEY_TIMEOUT="0.2",
        ),
        stack.root,
        "metrics-valkey",
    )
    listener = None
    try:
        server.start()
        with server.client() as http:
            for _ in range(3):
                assert me(http, user.access).status_code == 503
        listener = Listener(slot)
        samples = _eventually(
            listener,
            lambda s: value(s, "irontrack_valkey_errors_total", operation="session_get") >= 3,
        )
        assert value(samples, "irontrack_valkey_errors_total", operation="session_get") >= 3
        assert value(samples, "irontrack_l1_lookups_total", result="bypass") >= 3
    finally:
        if listener is not None:
            listener.stop()
        server.stop()


def test_metrics_off_writes_nothing(stack: Stack, metrics_root: Path) -> None:
    slot = metrics_root / "off"
    slot.mkdir()
    stack.account.own(slot)
    server = Server(
        stack.app_env(PROMETHEUS_MULTIPROC_DIR=str(slot), IRONTRACK_METRICS="false"),
        stack.root,
        "metrics-off",
    )
    try:
        server.start()
        with server.client() as http:
            for _ in range(20):
                assert http.get("/ping").status_code == 200
            assert http.get("/health").status_code in (200, 503)
    finally:
        server.stop()
    assert list(slot.iterdir()) == []


def test_listener_refuses_a_missing_directory(stack: Stack) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "irontrack-metrics"), "--dir", str(stack.root / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "no such directory" in done.stderr


def test_listener_stops_on_sigterm_even_with_a_stalled_client(metrics_root: Path) -> None:
    """SIGTERM ends the listener cleanly (exit 0) once the request in hand is done: a client
    that sent half a request is dropped after the handler's timeout instead of holding it."""
    listener = Listener(metrics_root)
    stalled = socket.create_connection(("127.0.0.1", listener.port), timeout=10)
    try:
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: unfinished
        time.sleep(0.3)
        started = time.monotonic()
        listener.proc.send_signal(signal.SIGTERM)
        assert listener.proc.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        stalled.close()
        if listener.proc.poll() is None:
            listener.proc.kill()
