"""TLS between tiers, rendered on the controller and the CA guard, run for real.

* A single box renders PgBouncer's listen settings, valkey.conf and the app's env file without
  any TLS line (its links are loopback and unix sockets); a fleet turns TLS on exactly for the
  links that cross hosts: PgBouncer ``client_tls_sslmode = require``, Valkey ``port 0`` +
  ``tls-port``, the app's ``rediss://`` and CA files.
* The internal_ca role's CA step (community.crypto on the controller): refuses an inventory
  without a CA, refuses to generate one outside a local inventory, makes it once (key 0600) in a
  local one and keeps it across runs.
Run: pytest tests/roles/test_tier_tls.py
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from playbook_runner import run_playbook

RENDER = Path(__file__).with_name("render_tier_tls.yml")


def _playbook(
    tmp_path: Path, inventory: dict, playbook: Path, extra: dict
) -> subprocess.CompletedProcess:
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return run_playbook(
        "-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", json.dumps(extra),
        home=tmp_path, path="/usr/sbin:/usr/bin:/sbin:/bin", timeout=300,
    )  # fmt: skip


def render(tmp_path: Path, groups: dict[str, list[str]]) -> dict[str, str]:
    hosts = {
        "irontrack": {
            "children": {
                group: {"hosts": {h: {"irontrack_private_address": ADDRESSES[h]} for h in members}}
                for group, members in groups.items()
            }
        }
    }
    out = tmp_path / "out"
    out.mkdir()
    facts = {
        "valkey_maxmemory_mb": 256,
        "irontrack_db_password": "db-password-for-render",
        "irontrack_valkey_password": "valkey-password-for-render",
    }
    result = _playbook(tmp_path, hosts, RENDER, {"dest": str(out), **facts})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return {path.name: path.read_text() for path in out.iterdir()}


ADDRESSES = {
    "box": "10.0.0.9",
    "app1": "10.0.0.21",
    "app2": "10.0.0.22",
    "db1": "10.0.0.31",
    "cache1": "10.0.0.41",
}


def test_the_single_box_renders_no_tls(tmp_path):
    files = render(tmp_path, {g: ["box"] for g in ("proxy", "app", "db", "cache")})
    assert "tls" not in files["box.pgbouncer-listen.ini"], files["box.pgbouncer-listen.ini"]
    assert "listen_addr = 127.0.0.1\n" in files["box.pgbouncer-listen.ini"]
    valkey = files["box.valkey.conf"]
    assert "tls" not in valkey, valkey
    assert "\nport 6379\n" in valkey
    env = files["box.irontrack.env"]
    assert "CA_FILE" not in env, env
    assert "IRONTRACK_VALKEY_URL=redis://irontrack:" in env
    assert "@127.0.0.1:6432/" in env


def test_a_fleet_turns_tls_on_for_the_links_between_hosts(tmp_path):
    groups = {"proxy": ["box"], "app": ["app1", "app2"], "db": ["db1"], "cache": ["cache1"]}
    files = render(tmp_path, groups)
    listen = files["db1.pgbouncer-listen.ini"]
    assert "listen_addr = 127.0.0.1,10.0.0.31\n" in listen
    for line in (
        "client_tls_sslmode = require",
        "client_tls_key_file = /etc/pgbouncer/tls/server.key",
        "client_tls_cert_file = /etc/pgbouncer/tls/server.pem",
        "client_tls_ca_file = /etc/pgbouncer/tls/ca.pem",
        "client_tls_protocols = secure",
    ):
        assert f"\n{line}\n" in listen, listen
    valkey = files["cache1.valkey.conf"]
    for line in (
        "bind 127.0.0.1 -::1 10.0.0.41",
        "port 0",
        "tls-port 6379",
        "tls-cert-file /etc/valkey/tls/server.pem",
        "tls-key-file /etc/valkey/tls/server.key",
        "tls-auth-clients no",
        'tls-protocols "TLSv1.2 TLSv1.3"',
    ):
        assert f"\n{line}\n" in valkey, valkey
    assert "\nport 6379\n" not in valkey
    for app in ("app1", "app2"):
        env = files[f"{app}.irontrack.env"]
        assert "@10.0.0.31:6432/irontrack\n" in env, env
        assert "IRONTRACK_DATABASE_CA_FILE=/etc/irontrack/internal-ca.pem\n" in env
        assert "IRONTRACK_VALKEY_URL=rediss://irontrack:" in env
        assert "@10.0.0.41:6379/0\n" in env
        assert "IRONTRACK_VALKEY_CA_FILE=/etc/irontrack/internal-ca.pem\n" in env


def test_an_app_host_on_the_db_host_keeps_tls_when_another_app_host_exists(tmp_path):
    # PgBouncer serves TLS (app2 is elsewhere), so app1 on the same host uses it on loopback
    # (127.0.0.1 is in the certificate); the cache host serves app1 and app2 the same way.
    groups = {"proxy": ["box"], "app": ["app1", "app2"], "db": ["app1"], "cache": ["cache1"]}
    files = render(tmp_path, groups)
    assert "client_tls_sslmode = require" in files["app1.pgbouncer-listen.ini"]
    env = files["app1.irontrack.env"]
    assert "@127.0.0.1:6432/irontrack\nIRONTRACK_DATABASE_CA_FILE=" in env, env


CA_PLAY = [
    {
        "name": "Load the private CA",
        "hosts": "all",
        "connection": "local",
        "gather_facts": False,
        "tasks": [
            {"ansible.builtin.include_role": {"name": "internal_ca", "tasks_from": "ca"}},
            {
                "ansible.builtin.copy": {
                    "content": "{{ internal_ca_cert_pem }}",
                    "dest": "{{ dest }}/ca-seen.pem",
                    "mode": "0644",
                },
                "delegate_to": "localhost",
            },
        ],
    }
]


def ca_run(tmp_path: Path, **host_vars: object) -> subprocess.CompletedProcess:
    play = tmp_path / "ca.yml"
    play.write_text(yaml.safe_dump(CA_PLAY))
    inventory = {"all": {"hosts": {"db1": dict(host_vars)}}}
    return _playbook(tmp_path, inventory, play, {"dest": str(tmp_path)})


def test_an_inventory_without_a_ca_is_refused(tmp_path):
    result = ca_run(tmp_path)
    assert result.returncode != 0
    assert "no private CA for the links between tiers" in result.stdout, result.stdout[-3000:]


def test_a_ca_is_generated_only_in_a_local_inventory(tmp_path):
    ca_dir = tmp_path / "internal-ca"
    result = ca_run(tmp_path, internal_ca_dir=str(ca_dir), internal_ca_generate=True)
    assert result.returncode != 0
    assert "internal_ca_generate is for the local inventories only" in result.stdout
    assert not ca_dir.exists()
    # Not asked to generate: a missing CA directory is refused, nothing is made.
    result = ca_run(tmp_path, internal_ca_dir=str(ca_dir), irontrack_environment="local")
    assert result.returncode != 0
    assert "internal_ca_generate is false" in result.stdout, result.stdout[-3000:]
    assert not ca_dir.exists()


def test_a_local_inventory_makes_the_ca_once(tmp_path):
    ca_dir = tmp_path / "internal-ca"
    local = {
        "internal_ca_dir": str(ca_dir),
        "internal_ca_generate": True,
        "irontrack_environment": "local",
    }
    result = ca_run(tmp_path, **local)
    assert result.returncode == 0, result.stdout[-3000:]
    key, cert = ca_dir / "ca.key", ca_dir / "ca.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(ca_dir.stat().st_mode & 0o777) == "0o700"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CA:TRUE, pathlen:0" in text, text
    assert "Certificate Sign, CRL Sign" in text, text
    first = cert.read_bytes(), key.read_bytes()
    assert (tmp_path / "ca-seen.pem").read_text().strip() == first[0].decode().strip()
    result = ca_run(tmp_path, **local)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (cert.read_bytes(), key.read_bytes()) == first  # kept, not made again
    assert "changed=0" in result.stdout.split("PLAY RECAP")[-1]


def test_vault_values_take_precedence(tmp_path):
    ca_dir = tmp_path / "internal-ca"
    local = {
        "internal_ca_dir": str(ca_dir),
        "internal_ca_generate": True,
        "irontrack_environment": "local",
    }
    assert ca_run(tmp_path, **local).returncode == 0
    pem = (ca_dir / "ca.pem").read_text()
    os.rename(ca_dir, tmp_path / "moved")
    vault = {
        "internal_ca_cert": pem,
        "internal_ca_key": (tmp_path / "moved" / "ca.key").read_text(),
    }
    result = ca_run(tmp_path, **vault)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "ca-seen.pem").read_text().strip() == pem.strip()
    assert not ca_dir.exists()
