"""The guard rails refuse what a production host must never get, before touching it.

Each case writes a throwaway production-shaped inventory whose one host
(`guard-test.invalid`, ssh) can never be reached: a guard that fails does so on the
controller with its message and no host is contacted; a play that gets past the guards
ends UNREACHABLE on its first real task (which proves the guard passed). Run:
    pytest tests/roles/test_guard_rails.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from playbook_runner import REPO, run_playbook

HOST = "guard-test.invalid"
PRODUCTION = {
    "irontrack_environment": "production",
    "certs_provider": "acme",
    "certs_names": ["auth.irontrack.net"],
    "irontrack_db_password": "x" * 32,
    "irontrack_valkey_password": "y" * 32,
    "irontrack_pgbouncer_admin_password": "z" * 32,
    "irontrack_backup_gpg_public_key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n(vault)\n",
}


def inventory(tmp_path: Path, **overrides) -> Path:
    """A production-shaped inventory: one unreachable host in every group."""
    group_vars = tmp_path / "group_vars"
    group_vars.mkdir(parents=True, exist_ok=True)
    hosts = {
        "irontrack": {
            "children": {g: {"hosts": {HOST: None}} for g in ("proxy", "app", "db", "cache")},
            "vars": {"ansible_user": "deploy", "ansible_connection": "ssh"},
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    values = {**PRODUCTION, **overrides}
    (group_vars / "irontrack.yml").write_text(yaml.safe_dump(values))
    return tmp_path


def run(inv: Path, playbook: str, *args: str) -> tuple[int, str]:
    """``playbook``: a name in playbooks/, or a path from the repository root."""
    path = REPO / playbook if "/" in playbook else REPO / "playbooks" / playbook
    result = run_playbook(
        "-i", str(inv), str(path), "--check", *args,
        home=inv, ANSIBLE_SSH_ARGS="-o ConnectTimeout=3",
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def refused(inv: Path, playbook: str, *args: str) -> str:
    rc, out = run(inv, playbook, *args)
    assert rc == 2, out[-3000:]
    assert "UNREACHABLE" not in out, f"a host was contacted before the guard failed:\n{out[-3000:]}"
    assert "Refusing" in out, out[-3000:]
    return out


def passed(inv: Path, playbook: str, *args: str) -> str:
    """Past the guard: the first task that needs the host finds it unreachable."""
    _, out = run(inv, playbook, *args)
    assert "Refusing" not in out, out[-3000:]
    assert "UNREACHABLE" in out, out[-3000:]
    return out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"certs_provider": "mkcert"}, "certs_provider=mkcert is for local hosts only"),
        ({"certs_names": ["app.localhost"]}, "app.localhost"),
        ({"certs_names": ["localhost"]}, "localhost"),
        ({"certs_provider": "provided", "certs_names": ["203.0.113.7"]}, "203.0.113.7"),
        ({"certs_names": ["auth.example.net"]}, "auth.example.net"),
        ({"certs_trust_store_install": True}, "private CA"),
        ({"angie_server_names": ["irontrack.localhost"]}, "irontrack.localhost"),
    ],
    ids=["mkcert", "dot-localhost", "localhost", "ip", "placeholder", "trust-store", "server-name"],
)
def test_site_refuses_before_touching_the_host(tmp_path, overrides, message):
    out = refused(inventory(tmp_path, **overrides), "site.yml")
    assert message in out
    assert "Guard rails" in out


def test_site_refuses_encrypted_backups_without_a_key(tmp_path):
    """backup_encryption: gpg (the default) needs the public key from vault in production."""
    out = refused(inventory(tmp_path, irontrack_backup_gpg_public_key=""), "site.yml")
    assert "no backup public key was given" in out
    # a key directory on the controller (the local inventory's way) is no way out for production
    out = refused(
        inventory(
            tmp_path / "dir", irontrack_backup_gpg_public_key="",
            backup_encryption_controller_dir=str(tmp_path / "keys"),
        ),
        "site.yml",
    )  # fmt: skip
    assert "no backup public key was given" in out
    assert not (tmp_path / "keys").exists()


def test_site_passes_the_guard_with_unencrypted_backups(tmp_path):
    out = passed(
        inventory(tmp_path, irontrack_backup_gpg_public_key="", backup_encryption="none"),
        "site.yml",
    )
    assert "Refuse encrypted backups without a key" in out


def test_site_refuses_a_ca_as_the_provided_certificate(tmp_path):
    """A CA certificate (and so its key) offered as the proxy's certificate is refused."""
    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=not a leaf", "-keyout", str(tmp_path / "ca-key.pem"),
         "-out", str(ca), "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True,
    )  # fmt: skip
    out = refused(
        inventory(tmp_path / "inv", certs_provider="provided", certs_provided_cert_src=str(ca)),
        "site.yml",
    )
    assert "is a CA certificate" in out


def test_shipped_production_inventory_needs_real_names():
    """inventories/production as shipped: acme by default, placeholder names refused."""
    group_vars = REPO / "inventories" / "production" / "group_vars" / "irontrack" / "main.yml"
    shipped = yaml.safe_load(group_vars.read_text())
    assert shipped["certs_provider"] == "acme"
    assert shipped["irontrack_environment"] == "production"
    rc, out = run(REPO / "inventories" / "production", "site.yml")
    assert rc == 2, out[-3000:]
    assert "UNREACHABLE" not in out, out[-3000:]
    assert "auth.example.net" in out, out[-3000:]
    assert "set the real DNS names" in out, out[-3000:]


def test_site_passes_the_guard_with_acme_and_real_names(tmp_path):
    out = passed(inventory(tmp_path), "site.yml")
    assert "Check the certificate settings" in out


def test_bench_refuses_a_non_local_inventory(tmp_path):
    out = refused(inventory(tmp_path), "bench/playbook.yml")
    assert "bench_allow_production=true" in out


def test_bench_runs_with_the_explicit_switch(tmp_path):
    passed(inventory(tmp_path), "bench/playbook.yml", "-e", "bench_allow_production=true")


def test_bench_runs_on_a_local_inventory(tmp_path):
    passed(inventory(tmp_path, irontrack_environment="local"), "bench/playbook.yml")
