"""``irontrack-metrics``: the service's Prometheus endpoint, a small listener of its own.

It serves ``/metrics`` on a private address (default 127.0.0.1:9464), never through the public
proxy, merging the memory-mapped files the worker processes write (``prometheus-client``'s
multiprocess mode). ``--dir`` is the root: the files directly in it and in its subdirectories
(one per slot, ``<root>/<slot>``) are merged, so the blue and green slots of a deploy add up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


class TreeCollector:
    """MultiProcessCollector over every ``*.db`` file of ``root`` and its direct subdirectories."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def files(self) -> list[str]:
        return sorted(str(p) for p in (*self.root.glob("*.db"), *self.root.glob("*/*.db")))

    def collect(self) -> Iterable[Metric]:
        return MultiProcessCollector.merge(self.files(), accumulate=True)


class _QuietHandler(WSGIRequestHandler):
    # A scrape's request arrives at once; a client that stalls mid-request is dropped after
    # this many seconds instead of holding the (single-threaded) server, and its shutdown.
    timeout = 5

    def log_message(self, format: str, *args: object) -> None:
        pass


def build_server(root: Path, host: str, port: int) -> WSGIServer:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TreeCollector(root))  # type: ignore[arg-type]
    return make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)


def stop_on_signals(server: WSGIServer) -> None:
    """SIGTERM and SIGINT end ``serve_forever`` once the request in hand is answered.

    The handler runs in the serving thread, so it cannot call ``shutdown()`` itself (that waits
    for ``serve_forever`` to return): a thread does. Raising from the handler instead is lost
    when the signal lands inside a request: wsgiref's handler catches every exception there
    (a bare ``except``), answers 500 and serves on.
    """

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, name="irontrack-metrics-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="irontrack-metrics", description=__doc__)
    parser.add_argument(
        "--dir",
        type=Path,
        default=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        help="root of the workers' metric files (default: $PROMETHEUS_MULTIPROC_DIR)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    args = parser.parse_args(argv)
    if args.dir is None:
        parser.error("--dir or PROMETHEUS_MULTIPROC_DIR is required")
    if not args.dir.is_dir():
        print(f"irontrack-metrics: {args.dir}: no such directory", file=sys.stderr)
        return 2
    try:
        server = build_server(args.dir, args.host, args.port)
    except OSError as error:
        print(
            f"irontrack-metrics: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr
        )
        return 2
    stop_on_signals(server)
    print(f"irontrack-metrics: serving {args.dir} on http://{args.host}:{args.port}/metrics")
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
