"""Pure ASGI middleware: request timing for observers (metrics, a structured access log); a
request-body ceiling."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_escape = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _json_str(value: str) -> str:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(
        ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in value.translate(_escape)
    )


class AccessLogWriter:
    """Collects access-log lines and writes them in batches.

    A line per request through ``logging`` costs a LogRecord, a lock and a flush (a write
    syscall) each time — a third of the throughput of ``/ping``. Here lines are joined and
    written at most every ``interval`` seconds or every ``batch`` lines, from the event loop
    (no extra thread), and flushed at shutdown.
    """

    def __init__(
        self, stream: TextIO | None = None, interval: float = 0.25, batch: int = 256
    ) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._interval = interval
        self._batch = batch
        self._scheduled = False

    def write(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self._batch:
            self.flush()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_later(self._interval, self._timer)
                self._scheduled = True
            except RuntimeError:  # no loop: write at once
                self.flush()

    def _timer(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data = "\n".join(self._lines) + "\n"
        self._lines.clear()
        stream = self._stream or sys.stdout
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # closed stdout must not fail requests
            pass


Observer = Callable[[Scope, int, float], None]
"""``observe(scope, status, seconds)``: told of every finished HTTP request."""


class ObserveMiddleware:
    """Pure ASGI: times every HTTP request and tells ``observe`` its status and duration, once,
    when the app is done with it (status 500 if the app raised before answering). One timing
    and one send wrapper serve every observer (the metrics, the access log: :func:`observers`)."""

    __slots__ = ("app", "observe")

    def __init__(self, app: ASGIApp, observe: Observer) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.observe(scope, status, time.perf_counter() - start)


def observers(*each: Observer | None) -> Observer | None:
    """One observer that tells each given one in turn; the only one given as it is; ``None``
    when none is given."""
    given = tuple(o for o in each if o is not None)
    if len(given) < 2:
        return given[0] if given else None

    def each_one(scope: Scope, status: int, seconds: float) -> None:
        for observe in given:
            observe(scope, status, seconds)

    return each_one


class AccessLog:
    """An observer that writes one JSON line per request to ``sink``: ts, method, path, status,
    ms, client, pid (the worker's: read again in a forked child)."""

    __slots__ = ("pid", "sink")

    def __init__(self, sink: Callable[[str], None]) -> None:
        self.sink = sink
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.pid = os.getpid()

    def __call__(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        self.sink(
            f'{{"ts":{time.time():.3f},"method":"{scope["method"]}",'
            f'"path":"{_json_str(scope["path"])}","status":{status},'
            f'"ms":{seconds * 1000:.3f},'
            f'"client":"{client[0] if client else ""}","pid":{self.pid}}}'
        )


class BodyTooLarge(Exception):
    pass


_TOO_LARGE = b'{"detail":"request body too large"}'


class BodyLimitMiddleware:
    """Refuses request bodies above ``max_bytes`` with 413, declared or streamed."""

    __slots__ = ("app", "max_bytes")

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await _reply_413(send)
                    return
                break

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reply_413(send)


async def _reply_413(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_TOO_LARGE)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _TOO_LARGE})
