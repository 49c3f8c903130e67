"""Host state of the app role: the live slot, its socket, its settings and its sandbox.

The proxy connects to a link (app_socket) that points at the socket of the live slot
(irontrack@blue or irontrack@green); the other slot is stopped and disabled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest
from conftest import REPO, expected
from joserfc.jwk import OKPKey

USER = expected("app", "app_user")
GROUP = expected("app", "app_group")
SOCKET_DIR = expected("app", "app_socket_dir")
SOCKET = f"{SOCKET_DIR}/granian.sock"
INSTALL_DIR = expected("app", "app_install_dir")
ENV_FILE = "/etc/irontrack/irontrack.env"
KEYS_DIR = "/etc/irontrack/keys"
KEYSET = f"{KEYS_DIR}/jwt-keyset.json"
# The proxy's group: www-data for the nginx flavor (the local host), angie for Angie.
SOCKET_GROUP = os.environ.get("IRONTRACK_EXPECT_APP_SOCKET_GROUP", "www-data")
SERVER = expected("app", "app_server")


@pytest.fixture(scope="module")
def live_slot(host) -> str:
    link = host.file(SOCKET)
    assert link.is_symlink, f"{SOCKET} must be a link to the live slot's socket"
    name = PurePosixPath(link.linked_to).name
    assert name in ("granian-blue.sock", "granian-green.sock"), name
    return name.removeprefix("granian-").removesuffix(".sock")


@pytest.fixture(scope="module")
def idle_slot(live_slot) -> str:
    return "green" if live_slot == "blue" else "blue"


def unit_property(host, unit: str, name: str) -> str:
    return host.check_output(f"systemctl show -p {name} --value {unit}")


def curl_socket(host, path: str, as_user: str | None = None):
    command = f"curl -sS --max-time 5 -w '\\n%{{http_code}}' --unix-socket {SOCKET} http://localhost{path}"
    if as_user:
        command = f"runuser -u {as_user} -- {command}"
    result = host.run(command)
    assert result.rc == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_live_slot_enabled_and_running(host, live_slot):
    service = host.service(f"irontrack@{live_slot}")
    assert service.is_enabled
    assert service.is_running


def test_idle_slot_stopped_and_disabled(host, idle_slot):
    service = host.service(f"irontrack@{idle_slot}")
    assert not service.is_running
    assert not service.is_enabled


def test_socket_owner_group_mode(host, live_slot):
    socket = host.file(f"{SOCKET_DIR}/granian-{live_slot}.sock")
    assert socket.is_socket
    assert socket.user == USER
    assert socket.group == SOCKET_GROUP
    assert socket.mode == 0o660


def test_socket_directory(host):
    directory = host.file(SOCKET_DIR)
    assert directory.is_directory
    assert directory.user == USER
    assert directory.group == SOCKET_GROUP
    assert directory.mode == 0o2750
    tmpfiles = host.file("/etc/tmpfiles.d/irontrack.conf")
    assert tmpfiles.contains(f"^d {SOCKET_DIR} 2750 {USER} {SOCKET_GROUP}")


def test_ping_through_the_socket_as_the_proxy_user(host):
    status, body = curl_socket(host, "/ping", as_user=SOCKET_GROUP)
    assert status == 200
    assert json.loads(body) == {"ping": "pong"}


def test_other_users_cannot_reach_the_socket(host):
    result = host.run(
        f"runuser -u nobody -- curl -sS --max-time 5 --unix-socket {SOCKET} http://localhost/ping"
    )
    assert result.rc != 0


def test_health_through_the_socket(host):
    status, body = curl_socket(host, "/health")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "ok"
    assert answer["components"] == {"postgresql": "ok", "valkey": "ok"}
    release = PurePosixPath(host.file(f"{INSTALL_DIR}/current").linked_to).name
    assert answer["release"] == release, "the serving process must name the live release"


def test_live_slot_runs_the_current_release(host, live_slot):
    current = host.file(f"{INSTALL_DIR}/current")
    slot = host.file(f"{INSTALL_DIR}/slots/{live_slot}")
    assert current.is_symlink
    assert slot.is_symlink
    assert current.linked_to == slot.linked_to
    release = current.linked_to
    assert host.file(f"{release}/.irontrack-release").exists
    assert host.file(f"{release}/bin/granian").exists
    assert host.file(f"{release}/bin/uvicorn").exists


def test_server_command_line(host, live_slot):
    unit = f"irontrack@{live_slot}"
    pid = unit_property(host, unit, "MainPID")
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    assert f"--uds {SOCKET_DIR}/granian-{live_slot}.sock" in cmdline
    if SERVER == "granian":
        for flag in (
            "--interface asgi",
            "--runtime-threads 2",
            "--runtime-mode st",
            "--loop uvloop",
            "--backlog 2048",
        ):
            assert flag in cmdline
    else:
        for flag in ("--loop uvloop", "--http httptools"):
            assert flag in cmdline
    assert host.check_output(f"ps -o user= -p {pid}") == USER


def test_workers_follow_the_cpu_count(host, live_slot):
    pid = unit_property(host, f"irontrack@{live_slot}", "MainPID")
    # Uvicorn also forks multiprocessing's resource tracker: not a worker.
    children = host.check_output(f"ps -o args= --ppid {pid}").splitlines()
    workers = len([c for c in children if "resource_tracker" not in c])
    expected_workers = int(
        os.environ.get("IRONTRACK_EXPECT_APP_WORKERS", host.check_output("nproc"))
    )
    assert workers == expected_workers


def test_open_files_limit(host, live_slot, in_container):
    unit = f"irontrack@{live_slot}"
    assert unit_property(host, unit, "LimitNOFILE") == "65535"
    pid = unit_property(host, unit, "MainPID")
    limits = host.file(f"/proc/{pid}/limits").content_string
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    soft = int(line.split()[3])
    # The local container's hard cap is 20000 (CAP_SYS_RESOURCE is withheld there).
    assert soft == (20000 if in_container and soft < 65535 else 65535)


def test_sandboxing(host, live_slot):
    unit = f"irontrack@{live_slot}"
    assert unit_property(host, unit, "NoNewPrivileges") == "yes"
    assert unit_property(host, unit, "ProtectSystem") == "strict"
    assert unit_property(host, unit, "ProtectHome") == "yes"
    assert unit_property(host, unit, "PrivateTmp") == "yes"
    assert unit_property(host, unit, "CapabilityBoundingSet") == ""
    assert unit_property(host, unit, "Restart") == "on-failure"
    exposure = host.run(f"systemd-analyze security {unit} --no-pager")
    overall = exposure.stdout.strip().splitlines()[-1]
    assert float(overall.split("level for")[1].split(":")[1].split()[0]) <= 2.0, overall


def test_env_file_and_keys(host):
    env = host.file(ENV_FILE)
    assert (env.user, env.group, env.mode) == ("root", GROUP, 0o640)
    assert env.contains("^IRONTRACK_DATABASE_URL=postgresql.asyncpg://")
    assert env.contains("^IRONTRACK_VALKEY_URL=redis://")
    assert env.contains(f"^IRONTRACK_JWT_KEYSET_PATH={KEYSET}$")
    assert not env.contains("^IRONTRACK_JWT_PRIVATE_KEY_PATH")
    keys_dir = host.file(KEYS_DIR)
    assert (keys_dir.user, keys_dir.group, keys_dir.mode) == ("root", GROUP, 0o750)
    keyset = host.file(KEYSET)
    assert (keyset.user, keyset.group, keyset.mode) == ("root", GROUP, 0o640)


def _kids(keyset: dict) -> list[tuple[str, str]]:
    return [(OKPKey.import_key(k["private_pem"]).thumbprint(), k["state"]) for k in keyset["keys"]]


def test_the_keyset_is_the_controllers_and_jwks_publishes_it(host):
    """The host's keyset holds exactly the controller's keys (the local inventory's
    app_jwt_keyset_file), one signing; JWKS lists every one of them, the signing key first."""
    on_host = json.loads(host.file(KEYSET).content_string)
    kids = _kids(on_host)
    assert [state for _, state in kids].count("signing") == 1
    # The local inventory's controller file (absent for a keyset from vault).
    controller = Path(os.environ.get("IRONTRACK_SECRETS_DIR", REPO / ".secrets" / "local"))
    if (controller / "jwt-keyset.json").exists():
        assert _kids(json.loads((controller / "jwt-keyset.json").read_text())) == kids
    out = host.check_output(
        f"curl -sf --max-time 5 --unix-socket {SOCKET} http://localhost/.well-known/jwks.json"
    )
    published = [jwk["kid"] for jwk in json.loads(out)["keys"]]
    signing = [kid for kid, state in kids if state == "signing"]
    assert published == signing + [kid for kid, state in kids if state != "signing"]


def test_live_release_records_its_commit_lock_and_versions(host, live_slot):
    """The release names its lock (and its hash), the installed versions match the lock, and
    it runs on the interpreter the lock targets (Debian 12's python3)."""
    release = host.file(f"{INSTALL_DIR}/slots/{live_slot}").linked_to
    info = json.loads(host.file(f"{release}/release.json").content_string)
    assert info["release"] == PurePosixPath(release).name
    assert info["lock"] == "requirements.lock"
    lock_sum = host.check_output(f"sha256sum {release}/requirements.lock").split()[0]
    assert info["lock_sha256"] == lock_sum
    assert len(info["commit"]) == 40 or info["commit"] == "unknown"
    frozen = {}
    for line in host.file(f"{release}/pip-freeze.txt").content_string.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            frozen[name.lower().replace("_", "-")] = version
    for name, version in info["packages"].items():
        assert frozen.get(name.lower().replace("_", "-")) == version, name
    assert host.file(f"{release}/sbom.cdx.json").exists
    python = host.check_output(
        f"{release}/bin/python -c 'import platform; print(platform.python_version())'"
    )
    assert python == info["target_python"]
    base = host.check_output(f"readlink -f {release}/bin/python")
    assert base == "/usr/bin/python3.11", base


def test_live_release_imports_and_checks_its_dependencies(host, live_slot):
    """A smoke of the installed release on the host's own interpreter: pip's consistency check
    and an import of the app with every locked C extension it loads."""
    release = host.file(f"{INSTALL_DIR}/slots/{live_slot}").linked_to
    host.run_expect([0], f"{release}/bin/pip --isolated check")
    code = (
        "import irontrack.app, granian, uvloop, asyncpg, argon2, cryptography, msgspec, "
        "pydantic_core, uuid_utils, httptools, sqlalchemy; print('ok')"
    )
    result = host.run(f'{release}/bin/python -c "{code}"')
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "ok"
