"""Ask GET /ping over a unix socket in a loop, one new connection per request, until SIGTERM.

Runs on the host (python3 stdlib only), as the proxy's user, so it also proves that user can
reach the socket. On SIGTERM it prints one JSON line: requests, failures, the first errors and
the slowest request. Usage: python3 ping_loop.py SOCKET
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import time

stop = False


def handle_term(signum: int, frame: object) -> None:
    global stop
    stop = True


def ping(path: str) -> str | None:
    """None when the answer is 200 {"ping":"pong"}, else a description of the failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    connection = http.client.HTTPConnection("localhost", timeout=5.0)
    try:
        sock.connect(path)
        connection.sock = sock
        connection.request("GET", "/ping", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200 or json.loads(body) != {"ping": "pong"}:
            return f"status {response.status}: {body[:80]!r}"
        return None
    except (OSError, http.client.HTTPException, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def main() -> None:
    path = sys.argv[1]
    signal.signal(signal.SIGTERM, handle_term)
    signal.signal(signal.SIGINT, handle_term)
    requests = failures = 0
    errors: list[str] = []
    slowest = 0.0
    started = time.monotonic()
    while not stop:
        begin = time.monotonic()
        error = ping(path)
        slowest = max(slowest, time.monotonic() - begin)
        requests += 1
        if error is not None:
            failures += 1
            if len(errors) < 20:
                errors.append(f"{time.monotonic() - started:.3f}s {error}")
    summary = {
        "requests": requests,
        "failures": failures,
        "errors": errors,
        "slowest_s": round(slowest, 4),
        "seconds": round(time.monotonic() - started, 1),
    }
    print("PING-LOOP " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
