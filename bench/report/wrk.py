"""Parse the text wrk 4.x prints (with ``--latency``) into numbers, in ms, bytes and counts."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_METRIC_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BINARY_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

_NUMBER = r"(-?nan|-?inf|[0-9]+(?:\.[0-9]+)?)"
_RE_RUNNING = re.compile(r"Running (\S+) test @ (\S+)")
_RE_SHAPE = re.compile(r"(\d+) threads and (\d+) connections")
_RE_LATENCY = re.compile(
    rf"^\s*Latency\s+{_NUMBER}(us|ms|s|m|h)?\s+{_NUMBER}(us|ms|s|m|h)?\s+{_NUMBER}(us|ms|s|m|h)?"
    rf"\s+{_NUMBER}%",
    re.MULTILINE,
)
_RE_REQSEC = re.compile(
    rf"^\s*Req/Sec\s+{_NUMBER}([kMGT]?)\s+{_NUMBER}([kMGT]?)\s+{_NUMBER}([kMGT]?)\s+{_NUMBER}%",
    re.MULTILINE,
)
_RE_PERCENTILE = re.compile(rf"^\s*(50|75|90|99)%\s+{_NUMBER}(us|ms|s|m|h)\s*$", re.MULTILINE)
_RE_TOTALS = re.compile(
    rf"^\s*(\d+) requests in {_NUMBER}(us|ms|s|m|h), {_NUMBER}(B|KB|MB|GB|TB) read", re.MULTILINE
)
_RE_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_RE_RPS = re.compile(rf"^Requests/sec:\s+{_NUMBER}", re.MULTILINE)
_RE_TRANSFER = re.compile(rf"^Transfer/sec:\s+{_NUMBER}(B|KB|MB|GB|TB)", re.MULTILINE)
_RE_SIGNUP = re.compile(r"^IRONTRACK-SIGNUP (\{.*\})\s*$", re.MULTILINE)


class WrkParseError(ValueError):
    """The text is not the output of a finished wrk run."""


def _num(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else math.nan


def _ms(value: str, unit: str | None) -> float:
    return _num(value) * _TIME_UNITS_MS[unit or "us"]


@dataclass(frozen=True)
class Latency:
    """Latency figures in milliseconds (``nan`` when wrk recorded no response)."""

    avg_ms: float
    stdev_ms: float
    max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Errors:
    """wrk's error counters. ``timeout``: responses slower than --timeout (left out of latency)."""

    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    non_2xx_3xx: int = 0

    @property
    def socket(self) -> int:
        return self.connect + self.read + self.write

    @property
    def total(self) -> int:
        return self.socket + self.timeout + self.non_2xx_3xx


@dataclass(frozen=True)
class WrkResult:
    """One wrk run."""

    url: str
    duration: str
    threads: int
    connections: int
    requests: int
    seconds: float
    read_bytes: float
    rps: float
    transfer_bytes_per_s: float
    req_per_thread_avg: float
    latency: Latency
    errors: Errors
    signup: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"]["socket"] = self.errors.socket
        data["errors"]["total"] = self.errors.total
        return data


def _latency(line: re.Match[str], percentiles: dict[str, float]) -> Latency:
    """Latency figures; all ``nan`` when wrk recorded none (every response slower than
    --timeout: wrk then prints zeros and a ``-nan%`` spread)."""
    if math.isnan(_num(line.group(7))):
        nan = math.nan
        return Latency(nan, nan, nan, nan, nan, nan, nan)
    return Latency(
        avg_ms=_ms(line.group(1), line.group(2)),
        stdev_ms=_ms(line.group(3), line.group(4)),
        max_ms=_ms(line.group(5), line.group(6)),
        p50_ms=percentiles["50"],
        p75_ms=percentiles["75"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
    )


def parse(text: str) -> WrkResult:
    """Parse wrk's output (``--latency``; a ``done()`` summary line is read when present)."""
    running = _RE_RUNNING.search(text)
    shape = _RE_SHAPE.search(text)
    latency = _RE_LATENCY.search(text)
    reqsec = _RE_REQSEC.search(text)
    totals = _RE_TOTALS.search(text)
    rps = _RE_RPS.search(text)
    if not (running and shape and latency and reqsec and totals and rps):
        missing = [
            name
            for name, match in (
                ("'Running ... test @'", running),
                ("'threads and connections'", shape),
                ("'Latency'", latency),
                ("'Req/Sec'", reqsec),
                ("'requests in'", totals),
                ("'Requests/sec'", rps),
            )
            if match is None
        ]
        raise WrkParseError("not a finished wrk run: missing " + ", ".join(missing))

    percentiles = {p: _ms(v, u) for p, v, u in _RE_PERCENTILE.findall(text)}
    if len(percentiles) != 4:
        raise WrkParseError("no latency distribution: run wrk with --latency")
    socket = _RE_SOCKET.search(text)
    non2xx = _RE_NON2XX.search(text)
    transfer = _RE_TRANSFER.search(text)
    signup = _RE_SIGNUP.search(text)
    return WrkResult(
        url=running.group(2),
        duration=running.group(1),
        threads=int(shape.group(1)),
        connections=int(shape.group(2)),
        requests=int(totals.group(1)),
        seconds=_ms(totals.group(2), totals.group(3)) / 1000.0,
        read_bytes=_num(totals.group(4)) * _BINARY_UNITS[totals.group(5)],
        rps=_num(rps.group(1)),
        transfer_bytes_per_s=(
            _num(transfer.group(1)) * _BINARY_UNITS[transfer.group(2)] if transfer else math.nan
        ),
        req_per_thread_avg=_num(reqsec.group(1)) * _METRIC_UNITS[reqsec.group(2)],
        latency=_latency(latency, percentiles),
        errors=Errors(
            connect=int(socket.group(1)) if socket else 0,
            read=int(socket.group(2)) if socket else 0,
            write=int(socket.group(3)) if socket else 0,
            timeout=int(socket.group(4)) if socket else 0,
            non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
        ),
        signup=json.loads(signup.group(1)) if signup else None,
    )
