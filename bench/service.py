"""``python -m bench service``: /ping, /me with one token and with many users' tokens, and
signup, on one local Granian server, reported as ratios with their targets.

Not a test. Starts the real components the service tests use (PostgreSQL 18, PgBouncer in
transaction mode, Valkey) and one server with the report's flags and the real Argon2id
defaults, then runs wrk against it and prints:

* ``/me (one token) ÷ /ping`` (target ≥ 0.9): every request reuses one real login's token, so
  the verified-token memo and the session L1 hit every time;
* ``/me (distinct tokens) ÷ /ping`` (target ≥ 0.5): ``--sessions`` sessions of as many users,
  seeded through the service's own token and session code (``bench/host/sessions.py``, no
  Argon2id), spread over wrk's threads and connections by ``bench/host/tokens.lua``. With more
  sessions than the memo and the L1 hold (10,000 each by default) every request verifies the
  token's signature and reads its session from Valkey: the Valkey commands per request are
  printed beside it. The sessions are deleted afterwards;
* ``signup ÷ (Argon2id rate of as many concurrent threads as the hash pools)`` (target ≥ 0.95
  and 0 timeouts; the rate measured here, before and after the run), the server's CPU per
  signup beside the CPU of one hash, and the rows PostgreSQL holds after it.

Every wrk run is charged its CPU per request by process (``bench/cpu.py``), and the CPU cost of
a token verify is measured beside it: the counters that explain a ratio.

Ping and both /me runs alternate for ``--rounds`` rounds (medians).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from .common import (
    HOST_FILES,
    Run,
    Server,
    Stack,
    app_env,
    local_stack,
    serving,
    wrk,
    wrk_arguments,
)
from .cpu import CpuMeter, CpuTally

ME = "/api/v1/access/me"
TARGETS = {"me": 0.9, "me-distinct": 0.5}
SIGNUP_TARGET = 0.95  # of the Argon2id rate of as many concurrent threads as the hash pools


def add_arguments(parser: argparse.ArgumentParser) -> None:
    wrk_arguments(parser, workers=2, rounds=1, duration=10, connections=100)
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument(
        "--sessions",
        type=int,
        default=20000,
        help="distinct users' sessions for /me (≥ 10000; default 20000, twice the memo and L1)",
    )
    parser.add_argument("--signup-connections", type=int, default=20)
    parser.add_argument("--signup-timeout", type=int, default=30, help="wrk timeout, s")
    parser.add_argument(
        "--hash-workers", type=int, default=0, help="per worker (default: the service's)"
    )
    parser.add_argument("--cheap-argon2", action="store_true", help="t=1 m=1 MiB (diagnostics)")
    parser.add_argument("--no-signup", action="store_true", help="skip the signup scenario")
    parser.add_argument(
        "--profile-signup",
        type=Path,
        metavar="DIR",
        help="record the server's workers with py-spy during the signup run: DIR/signup.svg "
        "(flame graph) and DIR/signup.txt (collapsed stacks, summarised on stdout)",
    )


def _argon2_hasher() -> Any:
    """The service's default Argon2id (t=3, m=64 MiB, p=1), warmed up."""
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = Argon2Hasher(time_cost=3, memory_cost=65536, parallelism=1)
    hasher.hash("warm-up")
    return hasher


@dataclass(frozen=True)
class Argon2Rate:
    per_s: float  # hashes per second of wall time on one thread, here and now
    cpu_ms: float  # CPU ms of one hash (this thread's CPU time: other load does not inflate it)


def argon2_single_thread_rate(seconds: float = 3.0) -> Argon2Rate:
    """Argon2id on one thread, here and now: the wall-clock rate and the CPU of one hash."""
    hasher = _argon2_hasher()
    count, start, cpu_start = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        hasher.hash("benchmark-password")
        count += 1
    cpu = time.thread_time() - cpu_start
    return Argon2Rate(count / (time.perf_counter() - start), cpu / count * 1000)


def argon2_concurrent_rate(threads: int, seconds: float = 4.0) -> float:
    """Hashes per second of ``threads`` threads hashing with Argon2id at once, here and now:
    the signup limit of a server whose hash pools add up to ``threads``, measured by the host
    benchmark's own ``concurrent_rate`` (``host/argon2_rate.py``)."""
    spec = importlib.util.spec_from_file_location("argon2_rate", HOST_FILES / "argon2_rate.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {HOST_FILES / 'argon2_rate.py'}")
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    hashes, wall = host.concurrent_rate(_argon2_hasher(), threads, seconds)
    return hashes / wall


PY_SPY = Path(sys.executable).with_name("py-spy")


def start_profiler(server: Server, out: Path, seconds: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on the server and its workers for ``seconds``: a flame graph and the raw
    (collapsed) stacks, one sampler each (py-spy writes one format per run)."""
    if server.proc is None:
        raise RuntimeError("the server is not running")
    out.mkdir(parents=True, exist_ok=True)
    base = [str(PY_SPY), "record", "--pid", str(server.proc.pid), "--subprocesses"]
    # Python frames only, without pausing the server (--nonblocking): time spent below Python
    # (the Argon2 C code, Granian's Rust runtime) is charged to the Python frame that called it.
    base += ["--duration", str(seconds), "--rate", "200", "--nonblocking"]
    return [
        subprocess.Popen(  # noqa: S603 - our own argv
            [*base, "--format", fmt, "--output", str(out / f"signup.{ext}")],
            stdout=subprocess.DEVNULL,
            stderr=(out / f"py-spy-{ext}.log").open("wb"),
        )
        for fmt, ext in (("flamegraph", "svg"), ("raw", "txt"))
    ]


def finish_profiler(samplers: list[subprocess.Popen[bytes]], out: Path, top: int = 12) -> str:
    """Waits for the samplers; the share of on-CPU samples per innermost Python frame
    (collapsed stacks: ``process …;frame;frame;… count``)."""
    for sampler in samplers:
        if sampler.wait(timeout=120) != 0:
            raise RuntimeError(f"py-spy failed ({sampler.returncode}): see {out}/py-spy-*.log")
    leaves: dict[str, int] = {}
    total = 0
    for row in (out / "signup.txt").read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        leaf = frames[-1] if frames else "(no Python frame: native code of the process)"
        leaves[leaf] = leaves.get(leaf, 0) + int(count)
        total += int(count)
    lines = [f"   py-spy, signup run: {total} on-CPU samples of the server's processes ({out})"]
    for leaf, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{count / max(total, 1):8.1%}  {leaf}")
    return "\n".join(lines)


def token_verify_cost(keyset_path: Path, count: int = 2000) -> tuple[float, float]:
    """CPU µs per ``TokenService.verify`` (this thread's CPU time, so other load does not
    inflate it): a token seen for the first time (the Ed25519 signature is checked) and one
    the verified-token memo holds."""
    from irontrack.keyset import load_keyset
    from irontrack.tokens import TokenService

    tokens = TokenService(load_keyset(keyset_path), ttl=900)
    issued = [
        tokens.issue(f"user-{n}", f"u{n}@verify.bench.example.com").token for n in range(count)
    ]
    costs = []
    for _ in range(2):  # first pass: signature checked; second: memo hits
        start = time.thread_time()
        for token in issued:
            if tokens.verify(token) is None:
                raise RuntimeError("a freshly issued token did not verify")
        costs.append((time.thread_time() - start) / count * 1e6)
    return costs[0], costs[1]


def sessions_tool(env: dict[str, str], *args: str) -> str:
    """bench/host/sessions.py with the service's environment (as the playbook runs it)."""
    done = subprocess.run(  # noqa: S603 - our own script, argv only
        [sys.executable, str(HOST_FILES / "sessions.py"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sessions.py {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def valkey_commands(admin: redis.Redis) -> int:
    """Commands Valkey served on the service's data connections (``irontrack``) so far."""
    return sum(int(c["tot-cmds"]) for c in admin.client_list() if c["name"] == "irontrack")


def line(name: str, runs: list[Run]) -> str:
    rps = statistics.median(r.rps for r in runs)
    last = runs[-1].result
    each = " ".join(f"{r.rps:.0f}" for r in runs)
    return (
        f"{name:>14}: {rps:9.1f} req/s  p99 {last.latency.p99_ms:7.2f} ms  "
        f"non-2xx {sum(r.result.errors.non_2xx_3xx for r in runs)}  "
        f"socket errors {sum(r.result.errors.socket for r in runs)}  [{each}]"
    )


def run(args: argparse.Namespace) -> int:
    if args.sessions < 10000:
        print("--sessions: at least 10000 (issue 15)", file=sys.stderr)
        return 2
    from irontrack.settings import default_hash_workers

    with local_stack() as stack, tempfile.TemporaryDirectory(prefix="irontrack-bench-") as tmp:
        env = app_env(stack, real_hashing=True, IRONTRACK_ACCESS_LOG=args.access_log)
        if args.cheap_argon2:  # diagnostics: what signup costs besides hashing
            env.update(IRONTRACK_ARGON2_TIME_COST="1", IRONTRACK_ARGON2_MEMORY_COST="1024")
        hash_workers = args.hash_workers or default_hash_workers()
        env["IRONTRACK_HASH_WORKERS"] = str(hash_workers)
        tokens_file, manifest = Path(tmp) / "tokens.txt", Path(tmp) / "sessions.keys"
        admin = redis.Redis.from_url(stack.valkey.admin_url)
        before = _session_keys(admin)
        try:
            with serving(stack, env, "bench", server=args.server, workers=args.workers) as srv:
                return _measure(args, stack, env, srv, admin, tokens_file, manifest, hash_workers)
        finally:
            if manifest.exists():
                print(sessions_tool(env, "cleanup", "--manifest", str(manifest)))
                print(
                    f"session keys in Valkey: {before} before the run, {_session_keys(admin)} "
                    "after the cleanup (the one real login's 3 stay until they expire)"
                )
            admin.close()


def stack_pids(stack: Stack, server: Server) -> dict[str, int]:
    """The process trees whose CPU each scenario is charged for."""
    procs = {
        "server": server.proc,
        "valkey": stack.valkey.proc,
        "pgbouncer": stack.pgbouncer.proc,
        "postgres": stack.postgres.proc,
    }
    return {name: proc.pid for name, proc in procs.items() if proc is not None}


def _session_keys(admin: redis.Redis) -> int:
    return sum(1 for _ in admin.scan_iter("it:[srf]:*", count=1000))


def _measure(
    args: argparse.Namespace,
    stack: Stack,
    env: dict[str, str],
    server: Server,
    admin: redis.Redis,
    tokens_file: Path,
    manifest: Path,
    hash_workers: int,
) -> int:
    base = server.base_url
    with httpx.Client(base_url=base, timeout=60) as http:
        creds = {"email": "me@login.bench.irontrack.example.com", "password": "bench-Passw0rd-x"}
        assert http.post("/api/v1/access/signup", json=creds).status_code == 201
        token = http.post("/api/v1/access/login", json=creds).json()["access_token"]
    started = time.perf_counter()
    print(
        sessions_tool(
            env,
            "seed",
            *("--count", str(args.sessions)),
            *("--tokens", str(tokens_file), "--manifest", str(manifest)),
        ),
        f"(wall {time.perf_counter() - started:.1f} s with the interpreter's start)",
    )
    with httpx.Client(base_url=base, timeout=10) as http:  # one seeded token works for real
        first = tokens_file.read_text().split("\n", 1)[0]
        answer = http.get(ME, headers={"Cookie": f'access_token="{first}"'})
        assert answer.status_code == 200, answer.text
    rate_before = argon2_single_thread_rate()
    concurrent_before = argon2_concurrent_rate(hash_workers * args.workers)
    t, c, d = args.threads, args.connections, args.duration
    scenarios: dict[str, tuple[str, tuple[str, ...]]] = {
        "ping": ("/ping", ()),
        "me": (ME, ("-H", f'Cookie: access_token="{token}"')),
        "me-distinct": (ME, ("-s", str(HOST_FILES / "tokens.lua"), "--", str(tokens_file), str(t))),
    }
    runs: dict[str, list[Run]] = {name: [] for name in scenarios}
    cpu = {name: CpuTally() for name in scenarios}
    meter = CpuMeter(stack_pids(stack, server))
    distinct_commands = distinct_requests = 0
    for round_ in range(args.rounds):
        names = list(scenarios) if round_ % 2 == 0 else list(reversed(scenarios))
        for name in names:
            path, extra = scenarios[name]
            before = valkey_commands(admin)
            meter.start()
            result = wrk(base + path, t, c, d, *extra)
            meter.stop(cpu[name], result.result.requests)
            if name == "me-distinct":
                distinct_commands += valkey_commands(admin) - before
                distinct_requests += result.result.requests
            runs[name].append(result)
    signup = None
    signup_cpu = CpuTally()
    if not args.no_signup:
        nonce = f"local{int(time.time())}"
        meter.start()
        profiler = start_profiler(server, args.profile_signup, d) if args.profile_signup else None
        signup = wrk(
            base + "/api/v1/access/signup",
            t,
            args.signup_connections,
            d,
            *("-s", str(HOST_FILES / "signup.lua"), "--timeout", f"{args.signup_timeout}s"),
            *("--", nonce, "bench.irontrack.example.com"),
        )
        meter.stop(signup_cpu, signup.result.requests)
        if profiler is not None:
            print(finish_profiler(profiler, args.profile_signup))
    server.stop()  # lets in-flight signups finish (graceful), then frees the CPUs
    rate_after = argon2_single_thread_rate()
    rate = (rate_before.per_s + rate_after.per_s) / 2
    pool = hash_workers * args.workers
    concurrent = (concurrent_before + argon2_concurrent_rate(pool)) / 2
    command = server.command()

    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) at the "
        f"end; {Path(command[0]).name} {' '.join(command[2:])}; wrk -t{t} -c{c} -d{d}s, "
        f"{args.rounds} round(s) alternated (signup -c{args.signup_connections}); "
        f"access log {args.access_log}"
    )
    for name, name_runs in runs.items():
        print(line(name, name_runs))
        print(f"{'':>16}{cpu[name].describe()}")
    fresh, memo = token_verify_cost(stack.keyset_path)
    print(
        f"   token verify (TokenService.verify, CPU time in this process): {fresh:.0f} µs with "
        f"the Ed25519 signature checked, {memo:.1f} µs from the memo"
    )
    uses = distinct_requests / args.sessions
    print(
        f"   me-distinct: {args.sessions} sessions of distinct users, each token used "
        f"{uses:.1f} times on average; Valkey commands per request "
        f"{distinct_commands / max(distinct_requests, 1):.2f} (1.00: every session read missed "
        f"the L1)"
    )
    ping = statistics.median(r.rps for r in runs["ping"])
    for name, target in TARGETS.items():
        value = statistics.median(r.rps for r in runs[name]) / ping
        verdict = "met" if value >= target else "NOT met"
        print(f"ratio /{name} ÷ /ping: {value:.3f} (target ≥ {target}: {verdict})")
    if signup is not None:
        cores = len(os.sched_getaffinity(0))
        rows = int(
            stack.postgres.psql(
                f"SELECT count(*) FROM users WHERE email LIKE 'u-{nonce}-%'",  # noqa: S608
                database="irontrack",
            )
        )
        print(line("signup", [signup]))
        print(
            f"argon2id single-thread: {rate:.2f} hashes/s (t=3 m=65536 p=1); pool "
            f"{hash_workers}/worker x {args.workers} = {pool}; {rows} users written "
            f"(wrk counted {signup.result.requests} completions in {d} s)"
        )
        hash_ms = (rate_before.cpu_ms + rate_after.cpu_ms) / 2
        server_ms = signup_cpu.per_request_us()["server"] / 1000
        print(f"{'':>16}{signup_cpu.describe()}")
        print(
            f"   signup: the server spent {server_ms:.1f} ms of CPU per signup, one Argon2id hash "
            f"costs {hash_ms:.1f} ms of CPU here: {server_ms - hash_ms:.1f} ms per signup is not "
            "the hash (signups still in flight when wrk stopped are not counted)"
        )
        timeouts = signup.result.errors.timeout
        value = signup.rps / concurrent
        verdict = "met" if value >= SIGNUP_TARGET and not timeouts else "NOT met"
        print(
            f"argon2id, {pool} threads at once (the hash pools' size): {concurrent:.2f} hashes/s "
            "(before and after the run, averaged)"
        )
        print(
            f"ratio signup ÷ (argon2 rate of {pool} concurrent threads): {value:.3f} with "
            f"{timeouts} timeouts (target ≥ {SIGNUP_TARGET} and 0 timeouts: {verdict})"
        )
        print(f"ratio signup ÷ (argon2 rate x pool): {signup.rps / (rate * pool):.3f}")
        print(
            f"ratio signup ÷ (argon2 rate x min(pool, {cores} cores)): "
            f"{signup.rps / (rate * min(pool, cores)):.3f}"
        )
    return 0
