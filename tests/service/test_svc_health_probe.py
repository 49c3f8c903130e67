"""``/health`` probes its dependencies at most once per ``HEALTH_MAX_AGE`` per worker, one probe in
flight at a time, and says how old the result it serves is.

Probes are counted on the real servers, on a Valkey and a PgBouncer of this module's own (no
other client uses them): PgBouncer's ``total_query_count`` (a probe is one simple-protocol
``SELECT 1``), and Valkey's ``cmdstat_ping`` (in process) or the ``tot-cmds`` of the
connections named ``irontrack`` (a server: its L1 listener, ``irontrack-l1``, pings too).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator

import pytest
import redis
from harness import PgBouncer, Server, Stack, Valkey
from irontrack.db import create_engine
from irontrack.probe import HealthProbe
from irontrack.sessions import SessionStore
from irontrack.settings import Settings

ROUNDS = int(os.environ.get("IRONTRACK_HEALTH_ROUNDS", "10"))
BURST = 200


class Deps:
    """A Valkey and a PgBouncer (on the suite's PostgreSQL) used by nobody else."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.valkey = Valkey(stack.root, stack.account)
        self.bouncer = PgBouncer(
            stack.root, stack.account, pg_port=stack.postgres.port, psql=stack.pgbouncer.psql,
            name="pgbouncer-health",
        )  # fmt: skip
        self.admin = redis.Redis.from_url(self.valkey.admin_url)

    def env(self, **extra: str) -> dict[str, str]:
        own = {
            "IRONTRACK_DATABASE_URL": self.bouncer.url(),
            "IRONTRACK_VALKEY_URL": self.valkey.url,
            "IRONTRACK_DB_STATEMENT_CACHE": str(self.bouncer.tracks_prepared_statements).lower(),
        }
        return self.stack.app_env(**{**own, **extra})

    def settings(self, **extra: str) -> Settings:
        env = self.env(**extra)
        return Settings(**{k.removeprefix("IRONTRACK_").lower(): v for k, v in env.items()})

    def queries(self) -> int:
        """Queries PgBouncer passed to the app database so far."""
        rows = self.bouncer.admin("SHOW STATS")
        return int(next(r for r in rows if r["database"] == "irontrack")["total_query_count"])

    def pings(self) -> int:
        """PING commands Valkey served so far (every client)."""
        return int(self.admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))

    def service_commands(self) -> int:
        """Commands Valkey served on the connections named ``irontrack`` (the service's data
        pool, which the probe uses; not the L1 listener)."""
        clients = self.admin.client_list()
        return sum(int(c["tot-cmds"]) for c in clients if c.get("name") == "irontrack")

    def counts(self) -> tuple[int, int]:
        return self.pings(), self.queries()


@pytest.fixture(scope="module")
def deps(stack: Stack) -> Iterator[Deps]:
    deps = Deps(stack)
    deps.valkey.start()
    deps.bouncer.start()
    try:
        yield deps
    finally:
        deps.admin.close()
        deps.bouncer.stop()
        deps.valkey.stop()


class InProcess:
    """The service's own HealthProbe over its real engine and session store."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.sessions = SessionStore(settings)  # not init(): no L1 listener, no other PING
        self.probe = HealthProbe(self, settings.health_timeout, settings.health_max_age)

    async def warm(self, connections: int = 1) -> None:
        """Open the pools' connections before anything is counted (PgBouncer counts the
        queries SQLAlchemy runs on a new connection)."""

        async def hold() -> None:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
                await asyncio.sleep(0.05)

        await asyncio.gather(*(hold() for _ in range(connections)))
        await self.sessions.ping()

    async def close(self) -> None:
        await self.sessions.close()
        await self.engine.dispose()


async def _burst(probe: HealthProbe, n: int = BURST) -> list[tuple[int, bytes]]:
    return await asyncio.gather(*(probe.answer() for _ in range(n)))


def _ages(answers: list[tuple[int, bytes]]) -> list[int]:
    import msgspec

    return [msgspec.json.decode(body)["age_ms"] for _, body in answers]


@pytest.mark.asyncio
async def test_concurrent_requests_share_one_probe_per_age(deps: Deps) -> None:
    """(a) BURST concurrent answers on an expired result: exactly one probe reaches PostgreSQL
    and Valkey; (b) once the age passed, the next burst makes exactly one more; (e) every
    answer's age is within [0, max age]. ROUNDS rounds."""
    max_age = 0.5
    app = InProcess(deps.settings(IRONTRACK_HEALTH_MAX_AGE=str(max_age)))
    try:
        await app.warm()
        for round_ in range(ROUNDS):
            await asyncio.sleep(max_age + 0.05)
            before, probes = deps.counts(), app.probe.probes
            started = time.monotonic()
            answers = await _burst(app.probe)
            answers += await _burst(app.probe)  # within the same age: served from the result
            elapsed = time.monotonic() - started
            after = deps.counts()
            assert elapsed < max_age, f"round {round_}: the bursts took {elapsed:.3f} s"
            assert app.probe.probes - probes == 1, f"round {round_}"
            assert (after[0] - before[0], after[1] - before[1]) == (1, 1), f"round {round_}"
            assert {status for status, _ in answers} == {200}
            ages = _ages(answers)
            assert all(0 <= age <= max_age * 1000 for age in ages), ages
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_max_age_zero_probes_every_request(deps: Deps) -> None:
    """(d) HEALTH_MAX_AGE=0: no reuse, no sharing — one probe per answer, sequential or not."""
    app = InProcess(deps.settings(IRONTRACK_HEALTH_MAX_AGE="0"))
    try:
        await app.warm(connections=10)  # the burst below holds 10 connections at once
        before = deps.counts()
        for _ in range(20):
            assert (await app.probe.answer())[0] == 200
        answers = await _burst(app.probe, 10)
        after = deps.counts()
        assert {status for status, _ in answers} == {200}
        assert (after[0] - before[0], after[1] - before[1]) == (30, 30)
        assert app.probe.probes == 30
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_a_caller_that_goes_away_does_not_cancel_the_shared_probe(deps: Deps) -> None:
    """The first caller starts the probe and is cancelled (its client left); the callers that
    await the same probe still get its result, and no second probe runs."""
    app = InProcess(deps.settings(IRONTRACK_HEALTH_MAX_AGE="5"))
    try:
        await app.warm()
        first = asyncio.ensure_future(app.probe.answer())
        for _ in range(10):  # until the probe has started (a few loop turns)
            await asyncio.sleep(0)
        assert app.probe.probes == 1
        assert not first.done()
        others = asyncio.gather(*(app.probe.answer() for _ in range(10)))
        await asyncio.sleep(0)
        first.cancel()
        answers = await others
        assert {status for status, _ in answers} == {200}
        assert first.cancelled()
        assert app.probe.probes == 1
        assert (await app.probe.answer())[0] == 200  # the shared result was kept
        assert app.probe.probes == 1
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_hanging_valkey_is_a_timeout_reused_no_longer_than_the_age(deps: Deps) -> None:
    """A Valkey that accepts the connection and never answers (a listening socket nobody
    reads): the answer comes at the probe's timeout, names valkey, and that failed result is
    reused within its age but not beyond it."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        port = hung.getsockname()[1]
        timeout, max_age = 0.3, 1.0
        settings = deps.settings(
            IRONTRACK_VALKEY_URL=f"redis://irontrack:x@127.0.0.1:{port}/0",
            IRONTRACK_HEALTH_TIMEOUT=str(timeout),
            IRONTRACK_HEALTH_MAX_AGE=str(max_age),
        )
        app = InProcess(settings)
        try:
            async with app.engine.connect() as conn:  # PostgreSQL's side warm: only Valkey hangs
                await conn.exec_driver_sql("SELECT 1")
            started = time.monotonic()
            status, body = await app.probe.answer()
            took = time.monotonic() - started
            assert status == 503, body
            assert b'"failed":["valkey"]' in body
            assert b'"valkey":"timeout"' in body
            assert b'"postgresql":"ok"' in body
            assert timeout - 0.05 <= took < timeout + 0.5
            assert (await app.probe.answer())[0] == 503
            assert app.probe.probes == 1  # reused within its age
            await asyncio.sleep(max_age)
            assert (await app.probe.answer())[0] == 503
            assert app.probe.probes == 2  # and probed again after it
        finally:
            await app.close()


@pytest.fixture
def own_server(deps: Deps) -> Iterator[Server]:
    """One Granian worker on the module's own Valkey and PgBouncer, results reused 2 s."""
    server = Server(
        deps.env(IRONTRACK_HEALTH_MAX_AGE="2"), deps.stack.root, f"health-{deps.valkey.port}"
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Connection:
    """One keep-alive HTTP/1.1 connection (plain sockets: BURST requests land within
    milliseconds, which a pooled HTTP client on this machine cannot promise)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, path: str) -> tuple[int, dict[str, object]]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        body = await self.reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split()[1]), json.loads(body)


def test_server_bursts_cost_one_probe_each(deps: Deps, own_server: Server) -> None:
    """The same through a real server process (Granian, one worker): every burst of BURST
    concurrent GET /health after the age passed reaches PostgreSQL and Valkey exactly once."""
    max_age = 2.0
    rounds = max(2, ROUNDS // 4)

    async def run() -> None:
        opened = [await asyncio.open_connection("127.0.0.1", own_server.port) for _ in range(BURST)]
        connections = [Connection(reader, writer) for reader, writer in opened]

        async def burst() -> list[tuple[int, dict[str, object]]]:
            return await asyncio.gather(*(c.get("/health") for c in connections))

        try:
            await burst()  # every connection used once; the server's pools warm
            for round_ in range(rounds):
                await asyncio.sleep(max_age + 0.1)
                before = deps.queries(), deps.service_commands()
                started = time.monotonic()
                answers = await burst()
                elapsed = time.monotonic() - started
                after = deps.queries(), deps.service_commands()
                assert elapsed < max_age, f"round {round_}: the burst took {elapsed:.3f} s"
                assert {status for status, _ in answers} == {200}
                assert (after[0] - before[0], after[1] - before[1]) == (1, 1), f"round {round_}"
                ages = [body["age_ms"] for _, body in answers]
                assert all(0 <= age <= max_age * 1000 for age in ages), ages  # type: ignore[operator]
        finally:
            for c in connections:
                c.writer.close()

    asyncio.run(run())
