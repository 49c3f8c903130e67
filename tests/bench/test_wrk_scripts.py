"""bench/host on this machine: run_wrk.py's counters and signup.lua against a real HTTP server.

signup.lua needs wrk (Debian package `wrk`); those tests are skipped where it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from benchfixtures import FILES

from bench.report.wrk import parse

WRK = shutil.which("wrk")
needs_wrk = pytest.mark.skipif(WRK is None, reason="wrk is not installed (apt-get install wrk)")


class _SignupServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SignupHandler)
        self.lock = threading.Lock()
        self.emails: list[str] = []
        self.conflict_every = 0


class _SignupHandler(BaseHTTPRequestHandler):
    """201 {id, email} like the service; every Nth request answers 409 after storing nothing."""

    protocol_version = "HTTP/1.1"
    server: _SignupServer

    def log_message(self, *_: object) -> None:
        return

    def do_POST(self) -> None:
        assert self.headers["Content-Type"] == "application/json"
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert len(body["password"]) >= 8
        with self.server.lock:
            n = len(self.server.emails) + 1
            conflict = self.server.conflict_every and n % self.server.conflict_every == 0
            if not conflict:
                self.server.emails.append(body["email"])
        status, payload = (
            (409, {"detail": "email already registered"})
            if conflict
            else (
                201,
                {"id": "0190", "email": body["email"]},
            )
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def signup_server() -> Iterator[_SignupServer]:
    server = _SignupServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_signup(server: _SignupServer, nonce: str) -> str:
    port = server.server_address[1]
    out = subprocess.run(
        [WRK, "-t2", "-c4", "-d1s", "--latency", "-s", str(FILES / "signup.lua"),
         f"http://127.0.0.1:{port}/api/v1/access/signup", "--", nonce, "bench.example.org"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return out.stdout


@needs_wrk
def test_signup_lua_sends_unique_users_and_accounts_for_each(signup_server) -> None:
    result = parse(_run_signup(signup_server, "t1"))
    summary = result.signup
    assert summary is not None
    stored = list(signup_server.emails)
    assert len(stored) == len(set(stored)), "every request a new user"
    assert all(e.startswith("u-t1-") and e.endswith("@bench.example.org") for e in stored)
    assert summary["statuses"].get("201") == result.requests == summary["responses"]
    # What the server stored = the 201s wrk saw + what it left in flight at its stop.
    in_flight = summary["sent"] - summary["responses"]
    assert len(stored) - summary["statuses"]["201"] <= in_flight
    unanswered = set(summary["unanswered"])
    assert len(unanswered) == summary["sent"] - summary["statuses"]["201"]
    assert len(set(stored) - unanswered) == summary["statuses"]["201"]


@needs_wrk
def test_signup_lua_counts_other_statuses(signup_server) -> None:
    signup_server.conflict_every = 5
    summary = parse(_run_signup(signup_server, "t2")).signup
    assert summary is not None
    assert summary["statuses"].get("409", 0) > 0
    assert sum(summary["statuses"].values()) == summary["responses"]
    # A 409 leaves no row and is listed as unanswered (no 201 seen).
    assert len(summary["unanswered"]) == summary["sent"] - summary["statuses"]["201"]


@needs_wrk
def test_cookie_lua_sends_the_quoted_token() -> None:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            return

        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run(
            [WRK, "-t1", "-c1", "-d1s", "-s", str(FILES / "cookie.lua"),
             f"http://127.0.0.1:{server.server_address[1]}/api/v1/access/me"],
            env={**os.environ, "IRONTRACK_BENCH_TOKEN": "tok.en.value"},
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert seen
    assert set(seen) == {'access_token="tok.en.value"'}


@needs_wrk
def test_tokens_lua_spreads_distinct_tokens_round_robin(tmp_path) -> None:
    """Every token of the file is used, each thread round-robins over its own share (its
    tokens' use counts differ by at most one, plus wrk's unsent check request and one in
    flight), and a token travels on several connections."""
    tokens = [f"tok-{n:03d}.payload.sig" for n in range(40)]
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join(tokens) + "\n")
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            return

        def do_GET(self) -> None:
            with lock:
                seen.append((self.headers.get("Cookie", ""), self.client_address[1]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run(
            [WRK, "-t2", "-c6", "-d2s", "-s", str(FILES / "tokens.lua"),
             f"http://127.0.0.1:{server.server_address[1]}/api/v1/access/me",
             "--", str(path), "2"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    cookies = [cookie for cookie, _ in seen]
    assert len(cookies) > 4 * len(tokens), "a short run still uses every token several times"
    assert set(cookies) == {f'access_token="{t}"' for t in tokens}
    for share in (tokens[0::2], tokens[1::2]):  # thread 1 and thread 2
        counts = [cookies.count(f'access_token="{t}"') for t in share]
        assert max(counts) - min(counts) <= 2, counts
    connections: dict[str, set[int]] = {}
    for cookie, port in seen:
        connections.setdefault(cookie, set()).add(port)
    assert max(len(ports) for ports in connections.values()) > 1


@needs_wrk
def test_tokens_lua_refuses_a_missing_thread_count(tmp_path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("a.b.c\n")
    with socket.socket() as listening:  # wrk connects before it runs the script's init()
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        out = subprocess.run(
            [WRK, "-t1", "-c1", "-d1s", "-s", str(FILES / "tokens.lua"),
             f"http://127.0.0.1:{listening.getsockname()[1]}/", "--", str(path)],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    assert "usage: wrk -s tokens.lua" in out.stdout + out.stderr


def test_run_wrk_measures_the_cpu_of_its_command() -> None:
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    out = subprocess.run(
        [sys.executable, str(FILES / "run_wrk.py"), "--", sys.executable, "-c", burn],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    document = json.loads(out.stdout)
    assert document["rc"] == 0
    cpu = document["cpu"]
    assert cpu["wrk_s"] >= 0.35  # the command's own CPU time (rusage of the child)
    assert cpu["busy_s"] >= cpu["wrk_s"] * 0.9
    assert 0 < cpu["busy_pct"] <= 100
    assert cpu["cpus"] == os.cpu_count()


def test_run_wrk_reports_a_failing_command() -> None:
    out = subprocess.run(
        [sys.executable, str(FILES / "run_wrk.py"), "--", sys.executable, "-c", "exit(3)"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(out.stdout)["rc"] == 3


def test_run_wrk_needs_a_command() -> None:
    out = subprocess.run(
        [sys.executable, str(FILES / "run_wrk.py")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 2
