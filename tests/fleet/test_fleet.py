"""The fleet of molecule/fleet: proxy, app1, app2, db, cache and backup on one docker network.

Runs on the controller (Molecule's verify), against the containers named
$IRONTRACK_FLEET-{proxy,app1,app2,db,cache,backup} (also their inventory names), the proxy's
published HTTPS port $IRONTRACK_FLEET_HTTPS_PORT (TLS verified against the local mkcert CA), and the
scenario's inventory $IRONTRACK_FLEET_INVENTORY (for the rolling deploy):
    IRONTRACK_FLEET=irontrack-fleet IRONTRACK_FLEET_HTTPS_PORT=9443 \
    IRONTRACK_FLEET_INVENTORY=~/.cache/molecule/<project>/fleet/inventory pytest tests/fleet
Client loops send one request per new connection, under the proxy's per-client rate limit
(every request comes from the controller's address).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("IRONTRACK_FLEET_HTTPS_PORT", "9443"))
SECRETS = Path(os.environ.get("IRONTRACK_SECRETS_DIR", REPO / ".secrets" / "local"))
APP_HOSTS = ("app1", "app2")
API = "/api/v1/access"

sys.path.insert(0, str(REPO / "tests" / "redeploy"))
from fleet import address, container, run  # noqa: E402
from test_zero_downtime import service_variant  # noqa: E402


def tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(SECRETS / "mkcert" / "rootCA.pem"))


def request(
    method: str,
    path: str,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the proxy, on a new connection."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", PORT, timeout=15, context=context or tls()
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Connection": "close", **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        found: dict[str, str] = {}
        for name, value in response.getheaders():  # repeated headers (Set-Cookie) joined
            key = name.lower()
            found[key] = f"{found[key]}\n{value}" if key in found else value
        return response.status, found, response.read()
    finally:
        connection.close()


def login() -> str:
    """A fresh user's access token (signup, then login through the proxy)."""
    email = f"fleet+{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    status, _, body = request("POST", f"{API}/signup", {"email": email, "password": password})
    assert status == 201, (status, body)
    status, headers, body = request("POST", f"{API}/login", {"email": email, "password": password})
    assert status == 200, (status, body)
    cookie = headers.get("set-cookie", "")
    token = cookie.split("access_token=", 1)[1].split(";", 1)[0].strip('"')
    assert token, cookie
    return token


class Loop:
    """GET `path` through the proxy every `interval` seconds until stopped; counts failures."""

    def __init__(self, path: str, headers: dict[str, str] | None = None, interval: float = 0.1):
        self.path, self.headers, self.interval = path, headers or {}, interval
        self.requests = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._context = tls()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.requests += 1
            try:
                status, _, body = request(
                    "GET", self.path, headers=self.headers, context=self._context
                )
                if status != 200:
                    self.failures.append(f"{time.time():.1f} status {status}: {body[:100]!r}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"{time.time():.1f} {type(error).__name__}: {error}")
            self._stop.wait(self.interval)

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> str:
        return f"{self.requests} requests, {len(self.failures)} failed: {self.failures[:5]}"


@pytest.fixture(scope="module")
def token() -> str:
    return login()


def listening(name: str) -> set[str]:
    out = run(name, "ss -Hltn | awk '{print $4}'").stdout
    return set(out.split())


def test_every_link_goes_over_the_network():
    db, cache = address("db"), address("cache")
    assert f"{db}:6432" in listening("db"), listening("db")
    assert f"{cache}:6379" in listening("cache"), listening("cache")
    for app in APP_HOSTS:
        assert f"{address(app)}:8000" in listening(app), listening(app)
        # The env file holds secrets: only grep's verdict leaves the host.
        for url in (f"@{db}:6432/", f"@{cache}:6379/"):
            run(app, f"grep -qF {shlex.quote(url)} /etc/irontrack/irontrack.env")
        # The TCP listener (forwarding to the switched link) is bound to the private address only.
        assert not {"0.0.0.0:8000", "*:8000", "[::]:8000"} & listening(app), listening(app)
        assert run(app, "systemctl is-active irontrack-listen.socket").stdout.strip() == "active"
    upstream = run("proxy", "grep -E '^\\s*server .*# app host' /etc/nginx/nginx.conf").stdout
    for app in APP_HOSTS:
        assert f"server {address(app)}:8000 max_fails=2 fail_timeout=10s;" in upstream, upstream
    assert "down;" not in upstream


def test_health_through_the_proxy():
    status, _, body = request("GET", "/health")
    assert status == 200, body


def test_requests_reach_both_app_hosts():
    probe = f"/fleet-probe-{uuid.uuid4().hex}"
    for _ in range(20):
        status, _, _ = request("GET", probe)
        assert status == 404
        time.sleep(0.06)
    counts: dict[str, int] = {}
    for _ in range(20):  # access-log lines are written in batches (every 0.25 s)
        for app in APP_HOSTS:
            journal = run(app, "journalctl --no-pager -o cat -u 'irontrack@*'").stdout
            counts[app] = journal.count(probe)
        if sum(counts.values()) == 20:
            break
        time.sleep(0.5)
    assert sum(counts.values()) == 20, counts
    assert all(count > 0 for count in counts.values()), counts


def on_host(app: str, method: str, path: str, body: dict | None = None, token: str = "") -> tuple:
    """(status, JSON or text) of a request to one app host's own socket, sent on that host."""
    args = ["curl", "-s", "--max-time", "10", "-w", r"\n%{http_code}"]
    args += ["--unix-socket", "/run/app/granian.sock", "-X", method]
    if body is not None:
        args += ["-H", "content-type: application/json", "--data", json.dumps(body)]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = run(app, shlex.join([*args, f"http://localhost{path}"])).stdout
    text, _, status = out.rpartition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


def login_on(app: str) -> str:
    """A fresh user's access token, signed by `app` itself (not through the proxy)."""
    credentials = {
        "email": f"fleet-{app}-{uuid.uuid4().hex[:12]}@example.com",
        "password": uuid.uuid4().hex,
    }
    status, answer = on_host(app, "POST", f"{API}/signup", credentials)
    assert status == 201, (app, status, answer)
    status, answer = on_host(app, "POST", f"{API}/login", credentials)
    assert status == 200, (app, status, answer)
    return answer["access_token"]


def kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


def test_a_token_issued_by_one_app_host_works_on_the_other():
    # One keyset on every app host (only its digest leaves the host), the same JWKS.
    digests = {
        app: run(app, "sha256sum /etc/irontrack/keys/jwt-keyset.json").stdout.split()[0]
        for app in APP_HOSTS
    }
    assert len(set(digests.values())) == 1, digests
    published = {app: on_host(app, "GET", "/.well-known/jwks.json") for app in APP_HOSTS}
    assert all(status == 200 for status, _ in published.values()), published
    assert published["app1"][1] == published["app2"][1], published
    kids = [key["kid"] for key in published["app1"][1]["keys"]]
    for issuer, verifier in (("app1", "app2"), ("app2", "app1")):
        token = login_on(issuer)
        assert kid(token) == kids[0], (kid(token), kids)  # signed with the signing key
        for app in (issuer, verifier):
            status, answer = on_host(app, "GET", f"{API}/me", token=token)
            assert status == 200, (issuer, app, status, answer)
    # A token whose signature does not verify is refused on both (the check can fail).
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for app in APP_HOSTS:
        assert on_host(app, "GET", f"{API}/me", token=forged)[0] == 401, app


def dropped(name: str) -> int:
    """Packets the firewall of a host dropped at the end of its input chain."""
    out = json.loads(run(name, "nft -j list counter inet irontrack input_dropped").stdout)
    return next(o["counter"]["packets"] for o in out["nftables"] if "counter" in o)


def reaches(source: str, target: str, port: int) -> bool:
    """Whether `source` (a fleet host, or "controller") opens a TCP connection to target:port."""
    if source == "controller":
        try:
            socket.create_connection((address(target), port), timeout=3).close()
        except OSError:
            return False
        return True
    probe = f"exec 3<>/dev/tcp/{address(target)}/{port}"
    return run(source, f"timeout 3 bash -c {shlex.quote(probe)}", check=False).returncode == 0


@pytest.mark.parametrize(("target", "port"), [("db", 6432), ("cache", 6379)])
def test_the_firewall_lets_only_app_hosts_reach_pgbouncer_and_valkey(target, port):
    assert f"{address(target)}:{port}" in listening(
        target
    )  # listening: the refusal is the firewall's
    for app in APP_HOSTS:
        assert reaches(app, target, port), (app, target, port)
    for source in ("proxy", "controller"):
        before = dropped(target)
        assert not reaches(source, target, port), (source, target, port)
        assert dropped(target) > before, (source, target, port)


def test_the_firewall_opens_443_to_everyone_and_the_app_port_to_the_proxy_only():
    assert reaches("controller", "proxy", 443)
    for app in APP_HOSTS:
        assert reaches("proxy", app, 8000), app
        before = dropped(app)
        assert not reaches("controller", app, 8000), app
        assert dropped(app) > before, app


# Run with python3 on an app host: how the server at HOST:PORT answers a plaintext client, a
# client verifying against the private CA, one trusting only the system CAs, and one that
# expects another host name. Prints one JSON object.
TLS_PROBE = r"""
import json, socket, ssl, struct, sys
host, port, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
CA = "/etc/irontrack/internal-ca.pem"
def startup():
    body = b"user\0irontrack\0database\0irontrack\0\0"
    return struct.pack("!ii", 8 + len(body), 196608) + body
def connect():
    sock = socket.create_connection((host, port), timeout=5)
    if kind == "pg":  # SSLRequest: PgBouncer answers S (go ahead) or N
        sock.sendall(struct.pack("!ii", 8, 80877103))
        assert sock.recv(1) == b"S"
    return sock
def plain():
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(startup() if kind == "pg" else b"PING\r\n")
    try:
        return sock.recv(200).decode("ascii", "replace")
    except OSError as error:
        return type(error).__name__
def tls(context, name):
    try:
        with context.wrap_socket(connect(), server_hostname=name) as sock:
            sock.sendall(startup() if kind == "pg" else b"PING\r\n")
            return {"ok": sock.version(), "answer": sock.recv(200).decode("ascii", "replace")}
    except ssl.SSLError as error:
        return {"error": type(error).__name__ + ": " + str(error.reason)}
print(json.dumps({
    "plain": plain(),
    "ca": tls(ssl.create_default_context(cafile=CA), host),
    "system_cas": tls(ssl.create_default_context(), host),
    "other_name": tls(ssl.create_default_context(cafile=CA), "elsewhere.invalid"),
}))
"""


@pytest.mark.parametrize(
    ("target", "port", "kind"), [("db", 6432, "pg"), ("cache", 6379, "valkey")]
)
def test_the_app_hosts_reach_pgbouncer_and_valkey_over_verified_tls_only(target, port, kind):
    for app in APP_HOSTS:
        out = run(app, shlex.join(["python3", "-c", TLS_PROBE, address(target), str(port), kind]))
        probe = json.loads(out.stdout)
        # Verified against the private CA, host name (the private address) included.
        assert probe["ca"].get("ok") in ("TLSv1.2", "TLSv1.3"), (app, probe)
        if kind == "pg":
            # TLS, then SCRAM: PgBouncer asks for the password (R, AuthenticationSASL).
            assert probe["ca"]["answer"].startswith("R"), (app, probe)
            # A plaintext client is told TLS is required (ErrorResponse).
            assert probe["plain"].startswith("E"), probe
            assert "SSL required" in probe["plain"], probe
        else:
            # TLS, then the ACL: the default user is off, so the PING needs AUTH first.
            assert probe["ca"]["answer"].startswith("-NOAUTH"), (app, probe)
            # No plaintext port: the bytes are not a TLS handshake, Valkey answers nothing.
            assert "NOAUTH" not in probe["plain"], probe
            assert "PONG" not in probe["plain"], probe
        # A client that does not trust the private CA, or expects another name, is refused.
        assert "CERTIFICATE_VERIFY_FAILED" in probe["system_cas"].get("error", ""), probe
        assert "CERTIFICATE_VERIFY_FAILED" in probe["other_name"].get("error", ""), probe
    # The app's settings: verified TLS on both links (only grep's verdict leaves the host).
    for app in APP_HOSTS:
        for line in (
            "IRONTRACK_DATABASE_CA_FILE=/etc/irontrack/internal-ca.pem",
            "IRONTRACK_VALKEY_CA_FILE=/etc/irontrack/internal-ca.pem",
            "IRONTRACK_VALKEY_URL=rediss://",
        ):
            run(app, f"grep -qF {shlex.quote(line)} /etc/irontrack/irontrack.env")


def test_the_app_connections_to_pgbouncer_are_tls():
    for app in APP_HOSTS:
        login_on(app)  # each app host's pool now holds connections to PgBouncer
    password = (SECRETS / "pgbouncer_admin_password").read_text().split()[0]
    out = subprocess.run(
        [
            "docker",
            "exec",
            "-e",
            f"PGPASSWORD={password}",
            container("db"),
            "psql",
            "host=/run/pgbouncer port=6432 dbname=pgbouncer user=pgbouncer_admin",
            "--no-psqlrc",
            "--csv",
            "--command=SHOW CLIENTS",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    header, *rows = [line.split(",") for line in out.splitlines()]
    clients = [dict(zip(header, row, strict=False)) for row in rows]
    for app in APP_HOSTS:
        mine = [c for c in clients if c["addr"] == address(app) and c["database"] == "irontrack"]
        assert mine, (app, clients)
        assert all(c["tls"].startswith("TLSv1.") for c in mine), (app, mine)


def test_the_exporters_read_pgbouncer_and_valkey_over_tls():
    # Loopback, TLS verified against the private CA (127.0.0.1 is in the certificates).
    run("db", "grep -qF sslmode=verify-full /etc/pgbouncer-exporter/config.yml")
    run("cache", "grep -qF -- '-tls-ca-cert-file=' /etc/default/prometheus-redis-exporter")
    for name, port, line in (("db", 9127, "pgbouncer_up 1.0"), ("cache", 9121, "redis_up 1")):
        for _ in range(10):
            text = run(name, f"curl -fsS --max-time 10 http://127.0.0.1:{port}/metrics").stdout
            if line in text.splitlines():
                break
            time.sleep(1)
        assert line in text.splitlines(), (name, text[-2000:])


def test_the_tls_keys_belong_to_the_services_and_are_private():
    for name, directory, user in (
        ("db", "/etc/pgbouncer/tls", "pgbouncer"),
        ("cache", "/etc/valkey/tls", "valkey"),
    ):
        stat = run(name, f"stat -c '%U %a' {directory}/server.key").stdout.split()
        assert stat == [user, "600"], (name, stat)
        sans = run(
            name, f"openssl x509 -in {directory}/server.pem -noout -ext subjectAltName"
        ).stdout
        assert f"IP Address:{address(name)}" in sans, sans
        run(name, f"openssl verify -CAfile {directory}/ca.pem {directory}/server.pem")
    # The CA key never leaves the controller (a line of it is found nowhere under /etc).
    ca_key = (SECRETS / "internal-ca" / "ca.key").read_text().strip().splitlines()[1]
    for name in ("proxy", *APP_HOSTS, "db", "cache", "backup"):
        assert run(name, f"grep -rqF {shlex.quote(ca_key)} /etc", check=False).returncode == 1, name


def live_slot(app: str) -> str:
    link = run(app, "readlink /run/app/granian.sock").stdout.strip()
    return Path(link).stem.rsplit("-", 1)[-1]


def test_stopping_app1_loses_no_request(token):
    slot = live_slot("app1")
    with Loop(f"{API}/me", {"Authorization": f"Bearer {token}"}) as loop:
        time.sleep(3)
        run("app1", "systemctl stop irontrack-listen.socket irontrack-listen.service 'irontrack@*'")
        time.sleep(8)
        run("app1", f"systemctl start irontrack-listen.socket irontrack@{slot}")
        time.sleep(4)
    assert loop.requests > 80, loop.summary()
    assert not loop.failures, loop.summary()
    assert live_slot("app1") == slot


def release(app: str) -> str:
    return run(app, "readlink /opt/irontrack/current").stdout.strip()


def test_rolling_deploy_loses_no_request(token, tmp_path):
    before = {app: release(app) for app in APP_HOSTS}
    command = [
        "ansible-playbook",
        "-i",
        os.environ["IRONTRACK_FLEET_INVENTORY"],
        str(REPO / "playbooks" / "deploy.yml"),
        "-e",
        f"app_source_dir={service_variant(tmp_path)}",
        *shlex.split(os.environ.get("IRONTRACK_DEPLOY_ARGS", "")),
    ]
    with Loop(f"{API}/me", {"Authorization": f"Bearer {token}"}) as loop:
        time.sleep(2)
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        time.sleep(2)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    after = {app: release(app) for app in APP_HOSTS}
    assert all(after[app] != before[app] for app in APP_HOSTS), (before, after)
    assert len(set(after.values())) == 1, after
    # One host at a time: each was drained (marked down, proxy reloaded) and put back.
    for app in APP_HOSTS:
        mark = f"Mark {container(app)} down in the upstream"
        assert result.stdout.count(mark) == 1, result.stdout[-3000:]
    upstream = run("proxy", "grep -E '^\\s*server .*# app host' /etc/nginx/nginx.conf").stdout
    assert "down;" not in upstream, upstream
    assert loop.requests > 100, loop.summary()
    assert not loop.failures, loop.summary()
