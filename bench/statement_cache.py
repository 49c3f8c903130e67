"""``python -m bench statement-cache``: what the prepared-statement cache buys through
PgBouncer >= 1.21: /health and signup, cache on vs off, in one run (alternating off, on, off,
on; the ratio is taken per pair).

Not a test. Starts the test harness's real PostgreSQL 18, PgBouncer (the one
IRONTRACK_TEST_PGBOUNCER names — `make bench-statement-cache` passes the PGDG mirror's — with
max_prepared_statements on) and Valkey, then for each setting one Granian server with the
report's flags. Signup runs with a cheap Argon2id (t=1, m=1 MiB) so the database path, not
the hash, is what is measured; /health is `SELECT 1` through PgBouncer plus a Valkey PING.
"""

from __future__ import annotations

import argparse
import statistics

import httpx

from .common import HOST_FILES, Stack, app_env, local_stack, serving, wrk, wrk_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    wrk_arguments(parser, workers=2, duration=10, connections=50)
    parser.add_argument("--pairs", type=int, default=2, help="off/on pairs")
    parser.add_argument("--signup-connections", type=int, default=10)
    parser.set_defaults(access_log="false")


def _run_one(stack: Stack, cache: bool, args: argparse.Namespace, tag: str) -> dict[str, float]:
    env = app_env(
        stack,
        IRONTRACK_ACCESS_LOG=args.access_log,
        IRONTRACK_DB_STATEMENT_CACHE=str(cache).lower(),
    )
    with serving(stack, env, f"cache-{tag}", workers=args.workers) as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert http.get("/health").status_code == 200
        t, d = args.threads, args.duration
        health = wrk(server.base_url + "/health", t, args.connections, d)
        signup = wrk(
            server.base_url + "/api/v1/access/signup",
            t,
            args.signup_connections,
            d,
            *("-s", str(HOST_FILES / "signup.lua"), "--", f"cache{tag}", "cache.bench.example"),
        )
    return {
        "health": health.rps,
        "signup": signup.rps,
        # 503: a probe slower than HEALTH_TIMEOUT
        "health non-2xx": float(health.result.errors.non_2xx_3xx),
        "signup non-2xx": float(signup.result.errors.non_2xx_3xx),
    }


def run(args: argparse.Namespace) -> int:
    with local_stack() as stack:
        if not stack.pgbouncer.tracks_prepared_statements:
            version = ".".join(map(str, stack.pgbouncer.version))
            print(f"PgBouncer {version} does not track prepared statements (needs >= 1.21)")
            return 1
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        # 2xx and non-2xx both count in wrk's rate: the non-2xx are reported beside it.
        for pair in range(args.pairs):
            for cache in (False, True):
                runs[cache].append(_run_one(stack, cache, args, f"{pair}-{str(cache).lower()}"))
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
