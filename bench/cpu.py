"""Where a scenario's CPU goes: CPU time per request of each local component, read from the
kernel's own accounting (``/proc``) around each wrk run.

Wall-clock ratios on a shared 2-core machine say *that* a scenario is slower; these counters say
*why*: the server's CPU per request (its workers), Valkey's, PgBouncer's, PostgreSQL's, wrk's
own (the load generator shares the cores), and what the rest of the machine took meanwhile
(``others``: noise from outside the benchmark).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

WRK = "wrk"
OTHERS = "others"


def _tree_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (wrk, run by subprocess.run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - times.iowait


@dataclass
class CpuTally:
    """CPU seconds by component and the requests they served, summed over runs."""

    seconds: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    wall: float = 0.0

    def per_request_us(self) -> dict[str, float]:
        return {name: s / max(self.requests, 1) * 1e6 for name, s in self.seconds.items()}

    def describe(self) -> str:
        """``server 182 µs, valkey 11 µs, …; busy 1.97 of 2 CPUs``."""
        parts = ", ".join(f"{name} {us:.0f} µs" for name, us in self.per_request_us().items())
        busy = sum(self.seconds.values()) / self.wall if self.wall else 0.0
        return f"CPU per request: {parts}; busy {busy:.2f} of {psutil.cpu_count()} CPUs"


class CpuMeter:
    """Measures one stretch (a wrk run) for the named process trees."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self._roots = dict(roots)
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: _tree_seconds(pid) for name, pid in self._roots.items()}
        sample[WRK] = children_cpu_seconds()
        sample[OTHERS] = _machine_busy_seconds()
        return sample

    def start(self) -> None:
        self._start = self._sample()
        self._wall = time.monotonic()

    def stop(self, tally: CpuTally, requests: int) -> None:
        """Adds the stretch since :meth:`start` to ``tally``. ``others`` is the machine's busy
        time minus everything named (and wrk)."""
        end, wall = self._sample(), time.monotonic() - self._wall
        delta = {name: max(end[name] - self._start[name], 0.0) for name in end}
        delta[OTHERS] = max(delta[OTHERS] - sum(v for k, v in delta.items() if k != OTHERS), 0.0)
        for name, seconds in delta.items():
            tally.seconds[name] = tally.seconds.get(name, 0.0) + seconds
        tally.requests += requests
        tally.wall += wall
