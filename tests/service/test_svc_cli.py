"""Console scripts: keygen, migrate (through PgBouncer and directly), check-config."""

from __future__ import annotations

import stat
from pathlib import Path

from harness import Stack


def test_keygen_creates_once_and_never_overwrites(stack: Stack, tmp_path: Path) -> None:
    private, public = tmp_path / "k" / "private.pem", tmp_path / "k" / "public.pem"
    args = ("irontrack-keygen", "--private-key", str(private), "--public-key", str(public))
    first = stack.run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "generated"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    before = private.read_bytes(), public.read_bytes()

    second = stack.run_cli(*args)
    assert second.returncode == 0
    assert second.stdout.strip() == "exists"
    assert (private.read_bytes(), public.read_bytes()) == before


def test_keygen_refuses_half_a_pair(stack: Stack, tmp_path: Path) -> None:
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    private.write_bytes(b"something")
    result = stack.run_cli(
        "irontrack-keygen", "--private-key", str(private), "--public-key", str(public)
    )
    assert result.returncode != 0
    assert "refusing to overwrite" in result.stderr
    assert private.read_bytes() == b"something"
    assert not public.exists()


def test_check_config_ok(stack: Stack) -> None:
    result = stack.run_cli("irontrack-check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_check_config_names_the_bad_variable(stack: Stack) -> None:
    env = stack.app_env(IRONTRACK_HASH_WORKERS="zero", IRONTRACK_DATABASE_URL="mysql://x")
    result = stack.run_cli("irontrack-check-config", env=env)
    assert result.returncode == 1
    assert "IRONTRACK_HASH_WORKERS" in result.stderr
    assert "IRONTRACK_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_missing_required(stack: Stack) -> None:
    env = stack.app_env()
    del env["IRONTRACK_VALKEY_URL"]
    result = stack.run_cli("irontrack-check-config", env=env)
    assert result.returncode == 1
    assert "IRONTRACK_VALKEY_URL" in result.stderr


def test_check_config_reads_env_file(stack: Stack, tmp_path: Path) -> None:
    env_file = tmp_path / "irontrack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in stack.app_env().items()))
    result = stack.run_cli("irontrack-check-config", env={"IRONTRACK_ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stderr
    missing = stack.run_cli("irontrack-check-config", env={"IRONTRACK_ENV_FILE": "/nonexistent"})
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


def test_check_config_bad_key_file(stack: Stack, tmp_path: Path) -> None:
    """The single key pair of earlier releases is still checked (a one-key keyset)."""
    bad, public = tmp_path / "bad.pem", tmp_path / "bad.pub.pem"
    bad.write_text("not a key")
    public.write_text("not a key")
    bad.chmod(0o600)
    env = stack.app_env(IRONTRACK_JWT_PRIVATE_KEY_PATH=str(bad))
    env["IRONTRACK_JWT_PUBLIC_KEY_PATH"] = str(public)
    del env["IRONTRACK_JWT_KEYSET_PATH"]
    result = stack.run_cli("irontrack-check-config", env=env)
    assert result.returncode == 1
    assert "PEM" in result.stderr


def test_check_config_needs_some_keys(stack: Stack) -> None:
    env = stack.app_env()
    del env["IRONTRACK_JWT_KEYSET_PATH"]
    result = stack.run_cli("irontrack-check-config", env=env)
    assert result.returncode == 1
    assert "no JWT keys: set jwt_keyset_path" in result.stderr
    assert "(settings)" in result.stderr


def test_server_refuses_to_start_on_bad_config(stack: Stack) -> None:
    from harness import Server

    server = Server(stack.app_env(IRONTRACK_ARGON2_TIME_COST="-1"), stack.root, "badconfig")
    try:
        server.start(timeout=20)
        raise AssertionError("server started with a bad configuration")
    except RuntimeError:
        assert "IRONTRACK_ARGON2_TIME_COST" in server.log_tail()
    finally:
        server.stop()


def test_migrate_is_idempotent_through_pgbouncer(stack: Stack) -> None:
    again = stack.run_cli("irontrack-migrate")
    assert again.returncode == 0, again.stderr
    version = stack.postgres.psql("SELECT version_num FROM alembic_version", database="irontrack")
    assert version.strip() == "0002_email_normalised"


def test_migrate_directly_against_postgresql_up_and_down(stack: Stack) -> None:
    stack.postgres.create_app_database("irontrack_direct")
    env = stack.app_env(IRONTRACK_DATABASE_URL=stack.postgres.url("irontrack_direct"))
    up = stack.run_cli("irontrack-migrate", env=env)
    assert up.returncode == 0, up.stderr
    tables = stack.postgres.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        "WHERE schemaname = 'public'",
        database="irontrack_direct",
    )
    assert tables.strip() == "alembic_version,users"
    down = stack.run_cli("irontrack-migrate", "--downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    tables = stack.postgres.psql(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'users'", database="irontrack_direct"
    )
    assert tables.strip() == "0"


def test_missing_keys_refuse_start_unless_dev_keys_are_asked_for(
    stack: Stack, tmp_path: Path
) -> None:
    from harness import Server

    private, public = tmp_path / "dev" / "private.pem", tmp_path / "dev" / "public.pem"
    keys = {
        "IRONTRACK_JWT_PRIVATE_KEY_PATH": str(private),
        "IRONTRACK_JWT_PUBLIC_KEY_PATH": str(public),
    }
    env = stack.app_env(**keys)
    del env["IRONTRACK_JWT_KEYSET_PATH"]  # the single pair of earlier releases, no keyset
    refused = Server(env, stack.root, "nokeys")
    try:
        refused.start(timeout=20)
        raise AssertionError("server started without its key files")
    except RuntimeError:
        assert "cannot read JWT key file" in refused.log_tail()
    finally:
        refused.stop()
    assert not private.exists()

    dev = Server({**env, "IRONTRACK_JWT_GENERATE_DEV_KEYS": "true"}, stack.root, "devkeys")
    try:
        dev.start()
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert "DEVELOPMENT key pair" in dev.log_tail()
    finally:
        dev.stop()
