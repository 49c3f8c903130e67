"""The fleet's separate backup host ($IRONTRACK_FLEET-backup, inventory group `backup`).

Barman runs there, not on the database host: base backups over PostgreSQL's protocol (TLS),
WAL by PostgreSQL's archive_command on the database host, Barman's own barman-wal-archive over
SSH into `barman put-wal` (postgres's key, accepted on the backup host for put-wal only),
encrypted at rest (backup_encryption: gpg, the default).

1. `barman check` is clean on the backup host, and a full backup is there, encrypted.
2. A write on the database host reaches the backup host's WAL archive through archive_command
   over SSH within a bound (forced pg_switch_wal), and the archived copy is encrypted.
3. The key postgres archives with runs `barman put-wal` and nothing else.
4. A failing archive_command is loud: PostgreSQL counts it, `barman check` names it, and
   archiving resumes by itself once the cause is gone.
5. The restore drill from the backup host: users A, a full backup, users B, time T, users C,
   then playbooks/restore.yml to T (`barman restore --remote-ssh-command`, Barman's key
   authorized on the database host for the restore only): A and B log in, C does not, /health
   is 200, a new timeline.
6. The disaster case: PostgreSQL gone after its last write was archived, restore.yml without a
   target time: every archived write is back, and Barman files no segment twice (no
   duplicate of an encrypted segment in errors/).

Helpers (users through the app's socket, psql as postgres, barman as barman, the archive
listing) are the restore drill's (tests/backup/test_restore_drill.py), run on the fleet's
containers through testinfra's docker backend.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "backup"))
from fleet import address, container  # noqa: E402
from test_restore_drill import (  # noqa: E402
    BARMAN_HOME,
    PG_UNIT,
    SERVER,
    Restored,
    a_failing_archive_command_is_loud,
    api,
    archived,
    barman,
    psql,
    settled_errors,
    take_backup,
    timeline,
    users,
)
from test_restore_drill import restore as restore_drill  # noqa: E402

WALS = f"{BARMAN_HOME}/{SERVER}/wals"
INCOMING = f"{BARMAN_HOME}/{SERVER}/incoming"
ARCHIVE_BOUND_S = 60  # Barman's cron runs every 15 s; the SSH copy takes well under a second


def on(name: str):
    return testinfra.get_host(f"docker://{container(name)}")


@pytest.fixture(scope="module")
def db():
    return on("db")


@pytest.fixture(scope="module")
def backup():
    return on("backup")


@pytest.fixture(scope="module")
def app():
    return on("app1")


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


def test_barman_runs_on_the_backup_host_only(db, backup):
    conf = backup.file(f"/etc/barman.d/{SERVER}.conf").content_string
    # Barman reaches PostgreSQL over the network (TLS), not a local socket
    assert re.search(
        r"^conninfo = host=(?!/)\S+ port=5432 user=barman dbname=postgres"
        r" sslmode=require$",
        conf,
        re.M,
    ), conf
    assert "encryption = gpg" in conf
    assert "streaming_archiver = off" in conf  # encrypted: WAL by archive_command only
    assert f"incoming_wals_directory = {INCOMING}" in conf
    assert not db.file("/opt/barman").exists
    assert not db.file(f"/etc/barman.d/{SERVER}.conf").exists
    # the database host carries the WAL client only, from the same locked wheels
    assert db.file("/opt/barman-cli/bin/barman-wal-archive").exists
    out = barman(backup, "check", SERVER)
    assert out.rc == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout


def test_archive_command_is_barman_wal_archive_over_ssh(db, backup):
    command = psql(db, "SHOW archive_command")
    assert command == (
        f"/opt/barman-cli/bin/barman-wal-archive --user barman {address('backup')} {SERVER} %p"
    )
    assert psql(db, "SHOW archive_mode") == "on"
    # the backup host's key is pinned from its own file, never accepted on first use
    pinned = db.file("/var/lib/postgresql/.ssh/known_hosts_irontrack_barman").content_string
    host_key = backup.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[:2]
    assert pinned.split() == [address("backup"), *host_key]
    config = db.file("/var/lib/postgresql/.ssh/config").content_string
    assert "StrictHostKeyChecking yes" in config
    assert "BatchMode yes" in config
    key = db.file("/var/lib/postgresql/.ssh/irontrack_barman_ed25519")
    assert (key.user, key.mode) == ("postgres", 0o600)


def xlogdb_entry(backup, segment: str) -> list[str]:
    out = backup.run(
        f"cat {WALS}/{SERVER}-xlog.db"
    )  # Barman 3.19: <xlogdb_directory>/SERVER-xlog.db
    return next((line.split() for line in out.stdout.splitlines() if line.startswith(segment)), [])


def test_a_write_reaches_the_backup_host_by_archive_command(db, backup, app, run_id):
    """A signup, then pg_switch_wal: the segment is filed on the backup host, encrypted."""
    failures = int(psql(db, "SELECT failed_count FROM pg_stat_archiver"))
    email = users(run_id, "ssh", 1)
    assert api(app, "signup", email) == {email[0]: 201}
    segment = psql(db, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    started = time.monotonic()
    psql(db, "SELECT pg_switch_wal()")
    while not archived(backup, segment) and time.monotonic() - started < 2 * ARCHIVE_BOUND_S:
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    assert archived(backup, segment), f"{segment} not in {WALS} after {elapsed:.0f} s"
    assert elapsed <= ARCHIVE_BOUND_S, f"{segment} archived after {elapsed:.0f} s"
    print(f"\n{segment} on the backup host {elapsed:.1f} s after pg_switch_wal()")
    # PostgreSQL's archiver shipped it (not some other path), without a failure
    assert psql(db, "SELECT last_archived_wal FROM pg_stat_archiver") >= segment
    assert int(psql(db, "SELECT failed_count FROM pg_stat_archiver")) == failures
    # filed gzip + gpg in xlog.db, and the file is public-key encrypted (RSA session key)
    entry = xlogdb_entry(backup, segment)
    assert entry[3:5] == ["gzip", "gpg"], entry
    path = f"{WALS}/{segment[:16]}/{segment}"
    packets = backup.run(f"gpg --batch --list-packets --homedir /nonexistent {path} 2>&1").stdout
    assert re.search(r":pubkey enc packet: version \d+, algo \d+, keyid [0-9A-F]{16}", packets)
    assert "PGP RSA encrypted session key" in backup.run(f"file -b {path}").stdout
    # no segment refused as a duplicate or a bad checksum
    assert backup.run(f"ls -A {BARMAN_HOME}/{SERVER}/errors 2>/dev/null").stdout.strip() == ""


def as_postgres_ssh(db, remote: str) -> subprocess.CompletedProcess:
    cmd = f"ssh -T barman@{address('backup')} {shlex.quote(remote)} </dev/null"
    return db.run(f"runuser -u postgres -- sh -c {shlex.quote(cmd)}")


def test_the_put_wal_key_can_do_nothing_else(db, backup):
    keys = backup.file(f"{BARMAN_HOME}/.ssh/authorized_keys").content_string
    lines = [line for line in keys.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, keys
    assert lines[0].startswith(
        f'restrict,from="{address("db")}",command="/opt/barman/bin/barman put-wal {SERVER}" '
        "ssh-ed25519 "
    ), lines[0]
    marker = f"/tmp/irontrack-forced-{uuid.uuid4().hex[:8]}"
    out = as_postgres_ssh(db, f"touch {marker}; echo ran-a-shell; id -un")
    # the forced command ran instead (put-wal, which finds no tar on stdin): no shell, no touch
    assert "ran-a-shell" not in out.stdout + out.stderr, out.stdout
    assert not backup.file(marker).exists


def test_a_failing_archive_command_fails_barman_check(db, backup, app, run_id):
    """put-wal cannot write into incoming/ on the backup host (its owner loses write)."""
    mode = backup.run(f"stat -c %a {INCOMING}").stdout.strip()
    assert mode, INCOMING
    a_failing_archive_command_is_loud(
        db, backup, app, run_id, block=f"chmod 0500 {INCOMING}", unblock=f"chmod {mode} {INCOMING}"
    )


def test_a_full_encrypted_backup_is_on_the_backup_host(backup):
    out = barman(backup, "-f", "json", "list-backups", SERVER)
    assert out.rc == 0, out.stderr
    done = [b for b in json.loads(out.stdout)[SERVER] if b["status"] == "DONE"]
    assert done, out.stdout
    newest = max(done, key=lambda b: float(b["end_time_timestamp"]))
    data = f"{BARMAN_HOME}/{SERVER}/base/{newest['backup_id']}/data"
    files = backup.run(f"find {data} -type f -printf '%f\\n'").stdout.split()
    assert "base.tar.gz.gpg" in files, files
    assert [f for f in files if not f.endswith(".gpg")] == ["backup_manifest"], files


def restore(db, target: str | None = None) -> Restored:
    """playbooks/restore.yml on the fleet (the drill's helper): to ``target``, or to the newest
    state without one; it must succeed."""
    extra = ["-e", json.dumps({"restore_target_time": target})] if target else []
    return restore_drill(db, *extra, inventory=os.environ["IRONTRACK_FLEET_INVENTORY"])


def test_restore_from_the_backup_host(db, backup, app, run_id):
    """Users A, a full backup, users B, a differential backup, users B2, time T, users C, then
    playbooks/restore.yml to T from the backup host over SSH: Barman combines the differential
    with its full backup there and copies the result over; A, B and B2 log in, C does not,
    /health is 200, PostgreSQL runs on a new timeline, and Barman's key is no longer
    authorized on the database host."""
    a, b, b2 = users(run_id, "ra"), users(run_id, "rb"), users(run_id, "rb2")
    assert set(api(app, "signup", a).values()) == {201}
    full, backup_s = take_backup(backup, "full")
    assert full["backup_type"] == "full", full
    assert set(api(app, "signup", b).values()) == {201}
    diff, diff_s = take_backup(backup, "diff")
    assert diff["backup_type"] == "incremental", diff
    assert set(api(app, "signup", b2).values()) == {201}
    time.sleep(0.5)
    target = psql(db, "SELECT clock_timestamp()")
    time.sleep(0.5)
    c = users(run_id, "rc")
    assert set(api(app, "signup", c).values()) == {201}
    before = timeline(db)

    done = restore(db, target)
    print(
        f"\nseparate backup host: full backup {backup_s:.1f} s, differential {diff_s:.1f} s,"
        f" restore.yml {done.seconds:.1f} s, PgBouncer paused {done.paused_s} s"
    )
    assert done.backup_id == diff["backup_id"], done

    assert timeline(db) > before
    assert set(api(app, "login", a + b + b2).values()) == {200}
    assert set(api(app, "login", c).values()) == {401}
    assert api(app, "health", ["-"]) == {"-": 200}
    # Barman's key was authorized for the restore only; the encrypted backups' private key
    # was on the backup host for `barman restore` only.
    keys = db.run("cat /var/lib/postgresql/.ssh/authorized_keys 2>/dev/null").stdout
    assert "irontrack-restore-" not in keys, keys
    assert backup.run("ls -d /run/irontrack-restore-gnupg.* 2>/dev/null").stdout.strip() == ""
    out = barman(backup, "check", SERVER)
    assert out.rc == 0, out.stdout


def test_restore_the_newest_state_after_losing_postgresql(db, backup, app, run_id):
    """The database host's disaster: PostgreSQL is gone (stopped here) after its last write was
    archived. restore.yml without a target time brings back everything the archive holds
    (users D), the cluster going on on its timeline, and Barman files no segment twice: the
    WAL it copied into pg_wal is marked archived, so PostgreSQL does not send it back (an
    encrypted copy cannot be compared, and a second one fails `barman check`)."""
    d = users(run_id, "rd")
    assert set(api(app, "signup", d).values()) == {201}
    segment = psql(db, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql(db, "SELECT pg_switch_wal()")
    deadline = time.monotonic() + ARCHIVE_BOUND_S
    while not archived(backup, segment) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert archived(backup, segment), f"{segment} not on the backup host"
    before = timeline(db)
    assert db.run(f"systemctl stop {PG_UNIT}").rc == 0
    try:
        done = restore(db)
    finally:
        # a failed restore must not leave the fleet's later tests without a database
        if db.run(f"systemctl is-active --quiet {PG_UNIT}").rc != 0:
            db.run(f"systemctl start {PG_UNIT}")
    assert done.what.startswith("to the newest archived state (PostgreSQL did not answer)"), done
    assert timeline(db) == before
    assert set(api(app, "login", d).values()) == {200}
    assert api(app, "health", ["-"]) == {"-": 200}
    # A checkpoint is where PostgreSQL would queue the copied segments again; then everything
    # queued is archived and filed before errors/ is read.
    errors = settled_errors(db, backup, INCOMING)
    assert errors == [], errors
    out = barman(backup, "check", SERVER)
    assert out.rc == 0, out.stdout
