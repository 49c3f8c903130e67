"""Ask GET /ping in a loop, one new connection per request, until SIGTERM.

Runs on the host (python3 stdlib only). TARGET is either the app's unix socket (run as the
proxy's group, so it also proves that group can reach it) or an https:// URL of the proxy
(then --interval keeps it under the proxy's rate limit). On SIGTERM it prints one JSON line:
requests, failures, the first errors and the slowest request.
Usage: python3 ping_loop.py TARGET [--interval SECONDS] [--cafile PEM]
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import ssl
import time
from urllib.parse import urlsplit

stop = False


def handle_term(signum: int, frame: object) -> None:
    global stop
    stop = True


def connect(target: str, context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    if target.startswith("https://"):
        url = urlsplit(target)
        return http.client.HTTPSConnection(
            url.hostname or "localhost", url.port or 443, timeout=5.0, context=context
        )
    connection = http.client.HTTPConnection("localhost", timeout=5.0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    connection.sock = sock
    return connection


def ping(target: str, context: ssl.SSLContext | None) -> str | None:
    """None when the answer is 200 {"ping":"pong"}, else a description of the failure."""
    connection: http.client.HTTPConnection | None = None
    try:
        connection = connect(target, context)
        connection.request("GET", "/ping", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200 or json.loads(body) != {"ping": "pong"}:
            return f"status {response.status}: {body[:80]!r}"
        return None
    except (OSError, http.client.HTTPException, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        if connection is not None:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="unix socket path or https:// URL of /ping's host")
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--cafile", help="CA of the proxy's certificate")
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.cafile)
    signal.signal(signal.SIGTERM, handle_term)
    signal.signal(signal.SIGINT, handle_term)
    requests = failures = 0
    errors: list[str] = []
    slowest = 0.0
    started = time.monotonic()
    while not stop:
        begin = time.monotonic()
        error = ping(args.target, context)
        slowest = max(slowest, time.monotonic() - begin)
        requests += 1
        if error is not None:
            failures += 1
            if len(errors) < 20:
                errors.append(f"{time.monotonic() - started:.3f}s {error}")
        if args.interval:
            time.sleep(args.interval)
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
