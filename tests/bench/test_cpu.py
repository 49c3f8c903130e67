"""bench/cpu.py charges real CPU time to the process tree that spent it, and bench/service.py's
token-verify probe tells a checked signature from a memo hit."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.cpu import OTHERS, WRK, CpuMeter, CpuTally

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"
# Waits for a line on stdin, burns 0.4 s of CPU, says so, then stays alive (a worker between
# requests) until its stdin closes.
WORKER = (
    "import sys, time\nsys.stdin.readline()\n"
    + BURN.format(seconds=0.4)
    + "print('done', flush=True)\nsys.stdin.readline()\n"
)


def test_cpu_of_a_descendant_is_charged_to_its_tree() -> None:
    # sh stays the parent (the trailing `:` keeps it from exec-ing python): the CPU is spent
    # by a descendant of the measured pid, as in a server's worker processes.
    script = f"{sys.executable} -c {shlex.quote(WORKER)}; :"
    server = subprocess.Popen(
        ["/bin/sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)  # the worker is up
        meter = CpuMeter({"server": server.pid, "idle": idle.pid})
        tally = CpuTally()
        meter.start()
        server.stdin.write("go\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "done"
        meter.stop(tally, requests=1000)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        idle.kill()
        idle.wait()
    assert 0.35 < tally.seconds["server"] < 0.8
    assert tally.seconds["idle"] < 0.05
    assert tally.requests == 1000
    assert set(tally.seconds) == {"server", "idle", WRK, OTHERS}
    per_request = tally.per_request_us()
    assert per_request["server"] == tally.seconds["server"] / 1000 * 1e6
    assert "server" in tally.describe()
    assert "µs" in tally.describe()


def test_waited_children_are_charged_to_wrk() -> None:
    meter = CpuMeter({})
    tally = CpuTally()
    meter.start()
    subprocess.run([sys.executable, "-c", BURN.format(seconds=0.3)], check=True)
    meter.stop(tally, requests=10)
    assert tally.seconds[WRK] >= 0.25


def test_a_gone_process_counts_zero() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    meter = CpuMeter({"gone": gone.pid})
    tally = CpuTally()
    meter.start()
    meter.stop(tally, requests=0)
    assert tally.seconds["gone"] == 0.0
    assert tally.per_request_us()["gone"] == 0.0


def test_token_verify_cost_tells_a_checked_signature_from_a_memo_hit(tmp_path: Path) -> None:
    from bench.service import token_verify_cost

    keyset = tmp_path / "jwt-keyset.json"
    tool = Path(sys.executable).with_name("irontrack-keyset")
    subprocess.run([str(tool), "init", str(keyset)], check=True, capture_output=True)
    fresh, memo = token_verify_cost(keyset, count=200)
    assert fresh > 10 * memo > 0


def test_profile_summary_charges_samples_to_the_innermost_python_frame(tmp_path: Path) -> None:
    from bench.service import finish_profiler

    proc = 'process 10:"granian app";process 11:"granian app"'
    (tmp_path / "signup.txt").write_text(
        f"{proc};_worker (thread.py:83);hash_secret (argon2/low_level.py:102) 90\n"
        f"{proc};serve (granian/mp.py:249) 6\n"
        f"{proc} 4\n"
        "garbage line without a count\n"
    )
    summary = finish_profiler([], tmp_path).splitlines()
    assert "100 on-CPU samples" in summary[0]
    assert summary[1].split() == ["90.0%", "hash_secret", "(argon2/low_level.py:102)"]
    assert "serve (granian/mp.py:249)" in summary[2]
    assert "no Python frame" in summary[3]


def test_host_argon2_concurrent_rate_runs_every_thread_until_the_deadline() -> None:
    import importlib.util

    from pwdlib.hashers.argon2 import Argon2Hasher

    path = Path(__file__).resolve().parents[2] / "bench" / "host" / "argon2_rate.py"
    spec = importlib.util.spec_from_file_location("argon2_rate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cheap = Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1)
    hashes, wall = module.concurrent_rate(cheap, threads=3, seconds=0.3)
    assert hashes >= 3  # every thread hashes at least once
    assert 0.3 <= wall < 5
