"""The redeploy tests' fixtures; their plain helpers are in redeploy_helpers.py (this file
puts this folder on sys.path, so it imports whatever pytest's rootdir or import mode)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redeploy_helpers import PROXY_URL, SOCKET, start_loop


@pytest.fixture
def ping_loops(host):
    """Client loops in transient units: on the socket (as nobody + the socket's group) and,
    when the proxy answers, through it (HTTPS, under its rate limit)."""
    if not host.file(SOCKET).is_symlink:
        pytest.skip(f"{SOCKET} is not there: provision the host first")
    group = host.check_output(f"stat -L -c %G {SOCKET}")
    loops = {"socket": start_loop(host, SOCKET, group=group)}
    if host.run(f"curl -sf --max-time 5 {PROXY_URL}").rc == 0:
        loops["proxy"] = start_loop(host, PROXY_URL, "--interval", "0.1")
    time.sleep(2)
    yield loops
    for unit in loops.values():
        host.run(f"systemctl stop {unit}")
