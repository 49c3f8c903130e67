#!/usr/bin/python3
"""Bring an IronTrack slot (blue|green) live: wait until it answers, then switch the link.

The proxy connects to a fixed path (e.g. /run/app/granian.sock). That path is a symbolic
link to the socket of the live slot (granian-blue.sock or granian-green.sock). Granian
cannot take a listening socket from systemd, so a new release starts in the idle slot,
and once it answers GET /ping on its own socket the link is replaced atomically
(rename(2)): new connections reach the new slot, the old one keeps the connections it
already accepted until it is stopped.

Usage: irontrack-slot up SLOT --socket PATH [--timeout SECONDS]   (unit's ExecStartPost)
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import sys
import time
from pathlib import Path

SLOTS = ("blue", "green")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix stream socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def slot_socket(public: Path, slot: str) -> Path:
    """granian.sock -> granian-blue.sock, in the same directory."""
    return public.with_name(f"{public.stem}-{slot}{public.suffix}")


def answers_ping(path: Path) -> bool:
    connection = UnixHTTPConnection(str(path), timeout=2.0)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_ready(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket() and answers_ping(path):
            return True
        time.sleep(0.2)
    return False


def switch_link(public: Path, target: Path) -> None:
    """Point `public` at `target` (relative link) with one atomic rename."""
    temporary = public.with_name(f".{public.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target.name)
    os.replace(temporary, public)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up"])
    parser.add_argument("slot", choices=SLOTS)
    parser.add_argument("--socket", type=Path, required=True, help="public socket path")
    parser.add_argument("--mode", type=lambda v: int(v, 8), default=0o660)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    own = slot_socket(args.socket, args.slot)
    if not wait_ready(own, args.timeout):
        print(f"irontrack-slot: {own} did not answer GET /ping within {args.timeout:g}s")
        return 1
    # Uvicorn makes its socket 0666; Granian honours --uds-permissions. Same result either way.
    own.chmod(args.mode)
    switch_link(args.socket, own)
    print(f"irontrack-slot: {args.slot} is live ({args.socket} -> {own.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
