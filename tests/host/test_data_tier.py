"""The data tier: PostgreSQL, PgBouncer and Valkey (roles postgresql, pgbouncer, valkey).

Behaviour is checked through the real services on the host: the application's
connection path (PgBouncer 127.0.0.1:6432 as `irontrack`), what the servers offer
before any password is sent (no trust, no md5, no cleartext), the admin console,
and Valkey's ACL. Secrets: IRONTRACK_DB_PASSWORD, IRONTRACK_VALKEY_PASSWORD,
IRONTRACK_PGBOUNCER_ADMIN_PASSWORD or the files in IRONTRACK_SECRETS_DIR.
"""

from __future__ import annotations

import json

import pytest
from conftest import expected, secret

APP_USER = "irontrack"
APP_DB = "irontrack"
PGB_PORT = 6432
VALKEY_PORT = 6379

# Sends a PostgreSQL StartupMessage and reports the authentication request the
# server answers with (0 ok/trust, 3 cleartext, 5 md5, 10 SASL) and, for SASL, the
# mechanisms offered. No password is sent. Runs with the host's python3.
AUTH_PROBE = r"""
import json, socket, struct, sys
target, user, db = sys.argv[1], sys.argv[2], sys.argv[3]
if target.startswith("/"):
    s = socket.socket(socket.AF_UNIX); s.connect(target)
else:
    host, port = target.rsplit(":", 1); s = socket.create_connection((host, int(port)))
s.settimeout(5)
params = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
body = struct.pack("!I", 196608) + params
s.sendall(struct.pack("!I", len(body) + 4) + body)
head = s.recv(5)
kind, length = head[:1].decode(), struct.unpack("!I", head[1:5])[0]
payload = b""
while len(payload) < length - 4:
    payload += s.recv(length - 4 - len(payload))
out = {"kind": kind}
if kind == "R":
    out["code"] = struct.unpack("!I", payload[:4])[0]
    out["mechanisms"] = [m.decode() for m in payload[4:].split(b"\0") if m]
else:
    out["message"] = payload.decode(errors="replace")
print(json.dumps(out))
"""

# Two connections as the app's ACL user: one enables CLIENT TRACKING (BCAST,
# REDIRECT to itself) and subscribes to __redis__:invalidate, the other SETs a key;
# the first must receive the invalidation (what the service's L1 cache needs).
TRACKING_PROBE = r"""
import socket, sys, time
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def conn():
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(2); return s
def cmd(s, *args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = str(a).encode(); parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    s.sendall(b"".join(parts)); time.sleep(0.1); return s.recv(65536)
reader, writer = conn(), conn()
for s in (reader, writer):
    assert cmd(s, "AUTH", user, password).startswith(b"+OK")
cid = int(cmd(reader, "CLIENT", "ID")[1:].split(b"\r\n")[0])
tracking = ("CLIENT", "TRACKING", "on", "REDIRECT", cid, "BCAST", "PREFIX", "itprobe:")
assert cmd(reader, *tracking).startswith(b"+OK")
assert b"subscribe" in cmd(reader, "SUBSCRIBE", "__redis__:invalidate")
assert cmd(writer, "SET", "itprobe:k", "1", "EX", "10").startswith(b"+OK")
time.sleep(0.2)
data = reader.recv(65536)
cmd(writer, "DEL", "itprobe:k")
print("invalidated" if b"itprobe:k" in data else "missing: %r" % data)
"""


@pytest.fixture(scope="module")
def pg_source() -> str:
    """pgdg (PGDG or a PGDG-shaped mirror: PostgreSQL 18) or debian (Debian 12's 15)."""
    return expected("postgresql", "postgresql_source")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("~")[0].split("-")[0].split(".")[:3])


def _apt_origin(host, package: str) -> tuple[str, list[str]]:
    """The installed version of a package and the apt sources `apt-cache policy` lists for it."""
    lines = host.check_output("apt-cache policy %s", package).splitlines()
    installed = next(line.split(":", 1)[1].strip() for line in lines if "Installed:" in line)
    sources, current = [], False
    for line in lines[lines.index("  Version table:") + 1 :]:
        fields = line.split()
        if line.startswith("        ") and fields and fields[0].isdigit():  # a source line
            if current:
                sources.append(" ".join(fields[1:]))
        elif fields:  # a version line: " *** 18.6-3~bpo12+1 500" or "     15.14-0+deb12u1 500"
            current = fields[fields[0] == "***"] == installed
    return installed, sources


@pytest.fixture(scope="module")
def pg_version(host) -> str:
    out = host.check_output("pg_lsclusters --no-header")
    return out.split()[0]


def _psql(host, password: str, sql: str, *, port: int = PGB_PORT, user: str = APP_USER,
          db: str = APP_DB, hostaddr: str = "127.0.0.1"):  # fmt: skip
    return host.run(
        "env PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -X -At -w -h %s -p %s -U %s -d %s -c %s",
        password, hostaddr, str(port), user, db, sql,
    )  # fmt: skip


def _auth_request(host, target: str, user: str, db: str) -> dict:
    out = host.run("python3 -c %s %s %s %s", AUTH_PROBE, target, user, db)
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def _valkey(host, *args: str, password: str | None = None):
    auth = ["--user", APP_USER, "--pass", password, "--no-auth-warning"] if password else []
    fmt = " ".join(
        ["valkey-cli", "-h", "127.0.0.1", "-p", str(VALKEY_PORT)] + ["%s"] * (len(auth) + len(args))
    )
    return host.run(fmt, *auth, *args)


# --- units --------------------------------------------------------------------------


def test_units_enabled_and_running(host, pg_version):
    for unit in (f"postgresql@{pg_version}-main", "pgbouncer", "valkey-server"):
        service = host.service(unit)
        assert service.is_enabled, unit
        assert service.is_running, unit


@pytest.mark.parametrize("unit", ["pgbouncer", "valkey-server"])
def test_units_ask_for_the_open_files_limit(host, unit):
    limit = host.check_output("systemctl show -p LimitNOFILE --value %s", unit)
    assert int(limit) == int(expected("kernel", "kernel_nofile_limit"))


def _nofile(host, pid: int | str) -> tuple[int, int]:
    """(soft, hard) open-files limit of a running process."""
    limits = host.file(f"/proc/{pid}/limits").content_string
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


@pytest.mark.parametrize("unit", ["pgbouncer", "valkey-server"])
def test_units_hold_the_open_files_limit(host, in_container, unit):
    """The running process has the limit as soft and hard limit (molecule/kernel proves it
    on a real kernel). In a container the machine's hard limit (20000 here) caps it."""
    if in_container:
        pytest.skip("the container's hard open-files limit is the machine's (20000 here)")
    want = int(expected("kernel", "kernel_nofile_limit"))
    pid = host.check_output("systemctl show -p MainPID --value %s", unit)
    assert int(pid) > 0, f"{unit} is not running"
    assert _nofile(host, pid) == (want, want)


def test_services_run_as_their_own_users(host):
    assert {p.user for p in host.process.filter(comm="pgbouncer")} == {"pgbouncer"}
    assert {p.user for p in host.process.filter(comm="valkey-server")} == {"valkey"}
    assert {p.user for p in host.process.filter(comm="postgres")} == {"postgres"}


def test_listening_on_loopback_only(host):
    for port in (5432, PGB_PORT, VALKEY_PORT):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port
    assert host.socket(f"unix:///run/pgbouncer/.s.PGSQL.{PGB_PORT}").is_listening


# --- PostgreSQL through PgBouncer -----------------------------------------------------


def test_app_user_through_pgbouncer(host):
    out = _psql(host, secret("db_password"), "SELECT 1")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_postgresql_major_version(host, pg_source):
    out = _psql(host, secret("db_password"), "SHOW server_version")
    assert out.rc == 0, out.stderr
    assert out.stdout.split(".")[0] == ("18" if pg_source == "pgdg" else "15"), out.stdout


def test_packages_come_from_the_chosen_suite(host, pg_source):
    """PGDG path: postgresql-18 and pgbouncer from the bookworm-pgdg suite (PGDG itself or
    the PGDG-shaped mirror); debian: Debian 12's own."""
    suite = "bookworm-pgdg/main" if pg_source == "pgdg" else "bookworm/main"
    for package in ("postgresql-18" if pg_source == "pgdg" else "postgresql-15", "pgbouncer"):
        installed, sources = _apt_origin(host, package)
        assert installed != "(none)", package
        assert any(suite in source for source in sources), (package, installed, sources)


def test_cluster_settings_for_its_version(host, pg_source):
    def show(name: str) -> str:
        return host.check_output("runuser -u postgres -- psql -X -At -c %s", f"SHOW {name}")

    assert show("data_checksums") == "on"
    assert show("wal_compression") == expected("postgresql", "postgresql_wal_compression")
    if pg_source == "pgdg":
        assert show("io_method") == expected("postgresql", "postgresql_io_method")
        assert int(show("io_workers")) == int(expected("postgresql", "postgresql_io_workers"))


def test_app_user_through_pgbouncer_unix_socket(host):
    out = _psql(host, secret("db_password"), "SELECT current_user", hostaddr="/run/pgbouncer")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == APP_USER


def test_random_page_cost_follows_the_storage_profile(host):
    profile = expected("kernel", "kernel_storage_profile")
    want = expected("postgresql", "postgresql_storage_profiles")[profile]["random_page_cost"]
    out = _psql(host, secret("db_password"), "SHOW random_page_cost")
    assert out.rc == 0, out.stderr
    assert float(out.stdout) == float(want)


def test_wrong_password_is_refused(host):
    for port in (PGB_PORT, 5432):
        out = _psql(host, "not-the-password-0123456789", "SELECT 1", port=port)
        assert out.rc != 0, port
        assert "authentication failed" in out.stderr, out.stderr


def test_no_password_is_refused(host):
    for port in (PGB_PORT, 5432):
        out = host.run(
            "env PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -p %s -U %s -d %s -c 'SELECT 1'",
            str(port), APP_USER, APP_DB,
        )  # fmt: skip
        assert out.rc != 0, port
        assert "no password supplied" in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("target", "user", "db"),
    [
        (f"127.0.0.1:{PGB_PORT}", APP_USER, APP_DB),
        (f"/run/pgbouncer/.s.PGSQL.{PGB_PORT}", APP_USER, APP_DB),
        (f"127.0.0.1:{PGB_PORT}", "pgbouncer_admin", "pgbouncer"),
        ("127.0.0.1:5432", APP_USER, APP_DB),
        ("/var/run/postgresql/.s.PGSQL.5432", APP_USER, APP_DB),
        ("127.0.0.1:5432", "postgres", "postgres"),
    ],
)
def test_servers_ask_for_scram_only(host, target, user, db):
    """Before any password: SASL with SCRAM-SHA-256, never trust (0), cleartext (3) or md5 (5)."""
    answer = _auth_request(host, target, user, db)
    assert answer.get("kind") == "R", answer
    assert answer["code"] == 10, answer
    assert "SCRAM-SHA-256" in answer["mechanisms"], answer


def test_pg_hba_has_no_trust_or_md5(host):
    rules = host.check_output(
        "runuser -u postgres -- psql -X -At -c %s",
        "SELECT type || ' ' || array_to_string(user_name, ',') || ' ' || auth_method "
        "FROM pg_hba_file_rules",
    ).splitlines()
    methods = {rule.split()[-1] for rule in rules}
    assert methods <= {"peer", "scram-sha-256"}, rules
    assert all(r.startswith("local postgres") for r in rules if r.endswith(" peer")), rules


def test_admin_console_shows_transaction_pools(host):
    out = _psql(host, secret("pgbouncer_admin_password"), "SHOW POOLS", user="pgbouncer_admin",
                db="pgbouncer")  # fmt: skip
    assert out.rc == 0, out.stderr
    # pool_mode is the last column up to 1.23; 1.24 appends load_balance_hosts after it.
    pools = {line.split("|")[0]: line.split("|")[1:] for line in out.stdout.splitlines()}
    assert "transaction" in pools[APP_DB], pools[APP_DB]


def test_admin_console_config(host):
    out = _psql(host, secret("pgbouncer_admin_password"), "SHOW CONFIG", user="pgbouncer_admin",
                db="pgbouncer")  # fmt: skip
    assert out.rc == 0, out.stderr
    config = {line.split("|")[0]: line.split("|")[1] for line in out.stdout.splitlines()}
    assert config["auth_type"] == "scram-sha-256"
    assert config["pool_mode"] == "transaction"
    assert int(config["default_pool_size"]) == int(
        expected("pgbouncer", "pgbouncer_default_pool_size")
    )
    version = _version(host.check_output("pgbouncer --version").split()[1])
    if expected("pgbouncer", "pgbouncer_source") == "pgdg" or (
        expected("postgresql", "postgresql_source") == "pgdg"
    ):
        assert version >= (1, 21)
    if version >= (1, 21):
        assert int(config["max_prepared_statements"]) > 0
    else:
        assert "max_prepared_statements" not in config


def test_app_statement_cache_follows_the_pgbouncer(host):
    """The app role turns asyncpg's statement cache on exactly when PgBouncer tracks them."""
    version = _version(host.check_output("pgbouncer --version").split()[1])
    env = host.file("/etc/irontrack/irontrack.env").content_string.splitlines()
    want = "true" if version >= (1, 21) else "false"
    assert f"IRONTRACK_DB_STATEMENT_CACHE={want}" in env


def test_app_user_is_not_an_admin(host):
    out = _psql(host, secret("db_password"), "SHOW POOLS", db="pgbouncer")
    assert out.rc != 0


# --- files holding secrets --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("/etc/pgbouncer/userlist.txt", "pgbouncer"),
        ("/etc/pgbouncer/pgbouncer.ini", "pgbouncer"),
        ("/etc/pgbouncer/pgbouncer-listen.ini", "pgbouncer"),
        ("/etc/valkey/users.acl", "valkey"),
        ("/etc/valkey/valkey.conf", "valkey"),
    ],
)
def test_service_config_owned_and_not_world_readable(host, path, owner):
    f = host.file(path)
    assert f.user == owner
    assert f.group == owner
    assert f.mode & 0o007 == 0, oct(f.mode)


def test_pg_hba_and_dropins(host, pg_version):
    hba = host.file(f"/etc/postgresql/{pg_version}/main/pg_hba.conf")
    assert hba.user == "postgres"
    assert hba.mode & 0o007 == 0
    confd = f"/etc/postgresql/{pg_version}/main/conf.d"
    for name in ("50-irontrack.conf", "60-irontrack-planner.conf"):
        assert host.file(f"{confd}/{name}").user == "postgres"


def test_userlist_holds_scram_secrets_only(host):
    lines = host.file("/etc/pgbouncer/userlist.txt").content_string.split("\n")
    entries = [line.split(" ", 1) for line in lines if line.strip()]
    assert {user.strip('"') for user, _ in entries} >= {APP_USER, "pgbouncer_admin"}
    assert all(value.strip('"').startswith("SCRAM-SHA-256$") for _, value in entries)


def test_valkey_acl_file_has_no_plain_password(host):
    acl = host.file("/etc/valkey/users.acl").content_string
    assert secret("valkey_password") not in acl
    assert "user default off" in acl


# --- Valkey -----------------------------------------------------------------------


def test_valkey_refuses_unauthenticated_commands(host):
    out = _valkey(host, "PING")
    assert "NOAUTH" in out.stdout + out.stderr


def test_valkey_answers_ping_with_the_password(host):
    out = _valkey(host, "PING", password=secret("valkey_password"))
    assert out.stdout.strip() == "PONG"


def test_valkey_refuses_a_wrong_password(host):
    out = _valkey(host, "PING", password="not-the-password-0123456789")
    assert "WRONGPASS" in out.stdout + out.stderr


def test_valkey_default_user_is_off(host):
    out = host.run("valkey-cli -h 127.0.0.1 -p %s --user default --pass %s --no-auth-warning PING",
                   str(VALKEY_PORT), secret("valkey_password"))  # fmt: skip
    assert "WRONGPASS" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "command", [["CONFIG", "GET", "maxmemory"], ["FLUSHALL"], ["KEYS", "*"], ["ACL", "LIST"]]
)
def test_valkey_app_user_cannot_administer(host, command):
    out = _valkey(host, *command, password=secret("valkey_password"))
    assert "NOPERM" in out.stdout + out.stderr


def test_valkey_app_user_has_client_tracking_and_resp3(host):
    pw = secret("valkey_password")
    assert _valkey(host, "HELLO", "3", password=pw).rc == 0
    out = host.run("python3 -c %s %s %s %s", TRACKING_PROBE, str(VALKEY_PORT), APP_USER, pw)
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "invalidated"


def test_valkey_memory_and_persistence(host):
    conf = host.file("/etc/valkey/valkey.conf").content_string.splitlines()
    assert f"maxmemory-policy {expected('valkey', 'valkey_maxmemory_policy')}" in conf
    assert any(line.startswith("maxmemory ") and line.endswith("mb") for line in conf)
    assert "appendonly no" in conf
    assert any(line.startswith("save ") for line in conf)
