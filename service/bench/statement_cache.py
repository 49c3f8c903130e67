"""What the prepared-statement cache buys through PgBouncer >= 1.21: /health and signup, cache
on vs off, in one run (alternating off, on, off, on; the ratio is taken per pair).

Not a test. Starts the test harness's real PostgreSQL 18, PgBouncer (the one
IRONTRACK_TEST_PGBOUNCER names — `make bench-statement-cache` passes the PGDG mirror's — with
max_prepared_statements on) and Valkey, then for each setting one Granian server with the
report's flags. Signup runs with a cheap Argon2id (t=1, m=1 MiB) so the database path, not
the hash, is what is measured; /health is `SELECT 1` through PgBouncer plus a Valkey PING.

Usage (from the repository root)::

    IRONTRACK_TEST_PGBOUNCER=$(scripts/mirror-pgbouncer.sh) \\
        .venv/bin/python service/bench/statement_cache.py [--duration 10] [--pairs 2]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import _terminate_as_interrupt, wrk  # noqa: E402
from harness import Server, Stack  # noqa: E402


def _run_one(stack: Stack, cache: bool, args: argparse.Namespace, tag: str) -> dict[str, float]:
    env = stack.app_env(
        IRONTRACK_ACCESS_LOG="false",
        IRONTRACK_DB_STATEMENT_CACHE=str(cache).lower(),
        IRONTRACK_ARGON2_TIME_COST="1",
        IRONTRACK_ARGON2_MEMORY_COST="1024",
    )
    server = Server(env, stack.root, f"cache-{tag}", workers=args.workers)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert http.get("/health").status_code == 200
        t, d = args.threads, args.duration
        health = wrk(server.base_url + "/health", t, args.connections, d)
        signup = wrk(
            server.base_url + "/api/v1/access/signup",
            t,
            args.signup_connections,
            d,
            "-s",
            str(HERE / "signup.lua"),
        )
    finally:
        server.stop()
    return {
        "health": float(health["rps"]),
        "signup": float(signup["rps"]),
        "health non-2xx": float(health["non2xx"]),  # 503: a probe slower than HEALTH_TIMEOUT
        "signup non-2xx": float(signup["non2xx"]),
    }


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--pairs", type=int, default=2, help="off/on pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--signup-connections", type=int, default=10)
    args = parser.parse_args()

    stack = Stack.start()
    try:
        if not stack.pgbouncer.tracks_prepared_statements:
            version = ".".join(map(str, stack.pgbouncer.version))
            print(f"PgBouncer {version} does not track prepared statements (needs >= 1.21)")
            return 1
        try:
            stack.prepare_app()
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        # 2xx and non-2xx both count in wrk's rate: the non-2xx are reported beside it.
        for pair in range(args.pairs):
            for cache in (False, True):
                runs[cache].append(_run_one(stack, cache, args, f"{pair}-{cache}"))
        version = ".".join(map(str, stack.pgbouncer.version))
        print(
            f"PgBouncer {version} (max_prepared_statements on), Granian {args.workers} workers, "
            f"wrk -t{args.threads} -c{args.connections} (signup -c{args.signup_connections}, "
            f"Argon2id t=1 m=1 MiB) -d{args.duration}s, {args.pairs} off/on pairs"
        )
        for name in ("health", "signup"):
            off = [r[name] for r in runs[False]]
            on = [r[name] for r in runs[True]]
            ratios = [b / a for a, b in zip(off, on, strict=True)]
            print(
                f"{name:>7}: off {', '.join(f'{x:.1f}' for x in off)} req/s | "
                f"on {', '.join(f'{x:.1f}' for x in on)} req/s | "
                f"on ÷ off {', '.join(f'{x:.3f}' for x in ratios)} "
                f"(median {statistics.median(ratios):.3f}); non-2xx off "
                f"{sum(r[name + ' non-2xx'] for r in runs[False]):.0f}, on "
                f"{sum(r[name + ' non-2xx'] for r in runs[True]):.0f}"
            )
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
