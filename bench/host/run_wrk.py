#!/usr/bin/python3
"""Run one wrk scenario on the host and read the CPU counters around it; print one JSON document.

Usage: run_wrk.py -- wrk ARGS...

The counters say what bounded a scenario: the host's CPU time (/proc/stat: busy, iowait, steal,
all cores), the CPU seconds of every systemd service in that interval (per-process utime+stime
from /proc/<pid>/stat, grouped by the .service in the process's cgroup) and wrk's own CPU time
(rusage of the child). CPU time /proc/stat counts that no process on this host accounts for is
load from outside (other containers or tenants sharing the cores).

Runs with the host's /usr/bin/python3 (standard library only).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def host_cpu() -> dict[str, int]:
    """Aggregate CPU ticks of the host (first line of /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = stat.readline().split()[1 : 1 + len(STAT_FIELDS)]
    return dict(zip(STAT_FIELDS, (int(v) for v in values), strict=True))


def unit_of(pid: str) -> str:
    """The systemd unit whose cgroup holds the process (last *.service component)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8")
    except OSError:
        return "gone"
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith(".service"):
                return part
    return "other"


def process_cpu() -> dict[str, dict[str, int]]:
    """CPU ticks (utime+stime) per pid, with the unit it belongs to."""
    found: dict[str, dict[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[-1].split()
        # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
        found[entry.name] = {"ticks": int(fields[11]) + int(fields[12]), "start": int(fields[19])}
    return found


def units_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, float]:
    """CPU seconds per unit spent between the two snapshots (processes alive at the end)."""
    seconds: dict[str, float] = {}
    for pid, now in after.items():
        then = before.get(pid)
        ticks = now["ticks"] - (then["ticks"] if then and then["start"] == now["start"] else 0)
        if ticks <= 0:
            continue
        unit = unit_of(pid)
        seconds[unit] = seconds.get(unit, 0.0) + ticks / CLOCK_TICKS
    return {unit: round(value, 2) for unit, value in sorted(seconds.items())}


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: run_wrk.py -- wrk ARGS...", file=sys.stderr)
        return 2
    command = argv[1:]
    cpu_before, procs_before = host_cpu(), process_cpu()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - argv from the playbook, no shell
    elapsed = time.time() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after, procs_after = host_cpu(), process_cpu()

    ticks = {name: cpu_after[name] - cpu_before[name] for name in STAT_FIELDS}
    total = sum(ticks.values()) or 1
    units = units_delta(procs_before, procs_after)
    wrk_seconds = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    busy_seconds = (total - ticks["idle"] - ticks["iowait"]) / CLOCK_TICKS
    accounted = sum(units.values()) + wrk_seconds
    document = {
        "argv": command,
        "rc": result.returncode,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "started": round(started, 3),
        "elapsed_s": round(elapsed, 3),
        "cpu": {
            "cpus": os.cpu_count(),
            "busy_pct": round(100.0 * (total - ticks["idle"] - ticks["iowait"]) / total, 1),
            "iowait_pct": round(100.0 * ticks["iowait"] / total, 1),
            "steal_pct": round(100.0 * ticks["steal"] / total, 1),
            "busy_s": round(busy_seconds, 2),
            "capacity_s": round(total / CLOCK_TICKS, 2),
            "wrk_s": round(wrk_seconds, 2),
            "units_s": units,
            "outside_s": round(max(0.0, busy_seconds - accounted), 2),
        },
    }
    json.dump(document, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
