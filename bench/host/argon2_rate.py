"""Argon2id hash rates with the service's own settings; print one JSON document.

* single thread: the rate from the thread's CPU time (what one core does when it is ours),
  the wall-clock rate beside it (lower when other load shares the cores);
* concurrent: with ``IRONTRACK_BENCH_APP_WORKERS`` set, as many threads hashing at once as
  the application's hash pools hold (app workers x hash workers), in hashes per second of wall
  time: the host's signup limit as issue 15 defines it (the cores, the memory bandwidth and the
  caches shared as in the service's pools; argon2-cffi releases the GIL).

Run with the release's interpreter so the same pwdlib/argon2-cffi and the same settings (read
from IRONTRACK_ENV_FILE, as the service does) are measured:

    IRONTRACK_ENV_FILE=/etc/irontrack/irontrack.env /opt/irontrack/current/bin/python argon2_rate.py

Without the concurrent figure the report falls back to rate x min(app workers x hash workers,
cores).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from irontrack.settings import load_settings
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_SECONDS = float(os.environ.get("IRONTRACK_BENCH_ARGON2_SECONDS", "3"))
MIN_HASHES = 5


def concurrent_rate(hasher: Argon2Hasher, threads: int, seconds: float) -> tuple[int, float]:
    """Hashes done by ``threads`` threads hashing at once for ``seconds``, and the wall time."""
    deadline = time.perf_counter() + seconds

    def until_deadline(_: int) -> int:
        done = 0
        while done == 0 or time.perf_counter() < deadline:
            hasher.hash(f"bench-password-{done}")
            done += 1
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        hashes = sum(pool.map(until_deadline, range(threads)))
    return hashes, time.perf_counter() - started


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
    concurrent: dict[str, float | int] = {}
    app_workers = int(os.environ.get("IRONTRACK_BENCH_APP_WORKERS") or 0)
    if app_workers > 0:
        threads = app_workers * settings.hash_workers
        done, wall = concurrent_rate(hasher, threads, MIN_SECONDS)
        concurrent = {
            "app_workers": app_workers,
            "concurrent_threads": threads,
            "concurrent_hashes": done,
            "concurrent_seconds": round(wall, 3),
            "concurrent_rate_per_s": round(done / wall, 3),
        }
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
            **concurrent,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
