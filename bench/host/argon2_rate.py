"""Single-thread Argon2id hash rate with the service's own settings; print one JSON document.

The rate is taken from the thread's CPU time (what one core does when it is ours); the
wall-clock rate is printed beside it (lower when other load shares the cores).

Run with the release's interpreter so the same pwdlib/argon2-cffi and the same settings (read
from IRONTRACK_ENV_FILE, as the service does) are measured:

    IRONTRACK_ENV_FILE=/etc/irontrack/irontrack.env /opt/irontrack/current/bin/python argon2_rate.py

The signup limit of the host follows: rate x min(app workers x hash workers, cores).
"""

from __future__ import annotations

import json
import os
import sys
import time

from irontrack.settings import load_settings
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_SECONDS = float(os.environ.get("IRONTRACK_BENCH_ARGON2_SECONDS", "3"))
MIN_HASHES = 5


def main() -> int:
    settings = load_settings()
    hasher = Argon2Hasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
    )
    hasher.hash("warm-up-password")
    hashes = 0
    started, cpu_started = time.perf_counter(), time.thread_time()
    elapsed = 0.0
    while hashes < MIN_HASHES or elapsed < MIN_SECONDS:
        hasher.hash(f"bench-password-{hashes}")
        hashes += 1
        elapsed = time.perf_counter() - started
    cpu = time.thread_time() - cpu_started
    json.dump(
        {
            "time_cost": settings.argon2_time_cost,
            "memory_cost": settings.argon2_memory_cost,
            "parallelism": settings.argon2_parallelism,
            "hash_workers": settings.hash_workers,
            "cpus": len(os.sched_getaffinity(0)),
            "hashes": hashes,
            "seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu, 3),
            # The rate of one core that is ours (CPU time); the wall-clock rate is lower when
            # other load shares the cores while measuring.
            "rate_per_s": round(hashes / cpu, 3),
            "ms_per_hash": round(1000.0 * cpu / hashes, 1),
            "wall_rate_per_s": round(hashes / elapsed, 3),
            "wall_ms_per_hash": round(1000.0 * elapsed / hashes, 1),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
