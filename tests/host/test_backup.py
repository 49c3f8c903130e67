"""Backups (role backup, Barman): WAL streaming through a slot, timers, the backup-age metric.

Checks the database host (which is also the backup server when the inventory has no `backup`
group, as on the local host): PostgreSQL's WAL settings, the replication slot in use, the
units Barman runs in, PostgreSQL's archive_command into Barman's incoming directory (and that
postgres can write there and nowhere else of Barman's), `barman check`, at least one full
backup, and the node-exporter textfile.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import expected

SERVER = expected("backup", "backup_server_name")
METRIC = f"{expected('backup', 'backup_metric_dir')}/{expected('backup', 'backup_metric_file')}"
SLOT = expected("backup", "backup_slot_name")
SPOOL = f"{expected('backup', 'backup_archive_spool')}/{SERVER}"
GROUP = expected("backup", "backup_archive_group")


def psql(host, sql: str) -> str:
    out = host.run(f"runuser -u postgres -- psql --no-psqlrc -Atc {sql!r}")
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def barman(host, *args: str):
    return host.run("runuser -u barman -- /opt/barman/bin/barman " + " ".join(args))


def test_archive_timeout_bounds_the_recovery_point(host):
    seconds = int(psql(host, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'"))
    assert 0 < seconds <= 60
    assert psql(host, "SHOW wal_level") == "replica"


def test_replication_slot_is_streamed(host):
    row = psql(host, f"SELECT active, slot_type FROM pg_replication_slots WHERE slot_name='{SLOT}'")
    assert row == "t|physical", f"slot {SLOT}: {row!r}"
    senders = "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'barman%'"
    assert psql(host, senders) == "1"


@pytest.mark.parametrize(
    "unit",
    [
        "irontrack-barman-receive-wal.service",
        "irontrack-barman-cron.timer",
        "irontrack-backup.timer",
    ],
)
def test_units_enabled_and_active(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running or host.run(f"systemctl is-active {unit}").stdout.strip() == "active"


def test_barman_check_passes(host):
    out = barman(host, "check", SERVER)
    assert out.rc == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout


def test_a_full_backup_exists(host):
    out = barman(host, "-f", "json", "list-backups", SERVER)
    assert out.rc == 0, out.stderr
    done = [b for b in json.loads(out.stdout)[SERVER] if b["status"] == "DONE"]
    assert done, out.stdout


def test_backup_age_metric(host):
    text = host.file(METRIC).content_string
    values = dict(re.findall(r"^(irontrack_backup_\w+) (\S+)$", text, re.MULTILINE))
    age = time.time() - float(values["irontrack_backup_last_success_timestamp_seconds"])
    assert -300 < age < 26 * 3600, text
    assert int(values["irontrack_backup_last_size_bytes"]) > 0, text
    assert host.file(METRIC).mode == 0o644


def test_barman_secrets_are_private(host):
    pgpass = host.file("/var/lib/barman/.pgpass")
    assert pgpass.user == "barman"
    assert pgpass.mode == 0o600
    assert host.file("/etc/barman.d").mode == 0o750


def test_postgresql_archives_into_barmans_incoming_directory(host):
    assert psql(host, "SHOW archive_mode") == "on"
    assert psql(host, "SHOW archive_command") == "/usr/local/sbin/irontrack-wal-archive %p %f"
    row = psql(
        host,
        "SELECT archived_count > 0, last_failed_time IS NULL"
        " OR last_failed_time <= last_archived_time FROM pg_stat_archiver",
    )
    assert row == "t|t", (
        f"pg_stat_archiver (archived any, no failure since the last success): {row}"
    )
    assert (
        f"incoming_wals_directory = {SPOOL}/incoming"
        in host.file(f"/etc/barman.d/{SERVER}.conf").content_string
    )
    errors = host.run(f"ls -A /var/lib/barman/{SERVER}/errors 2>/dev/null").stdout.split()
    assert errors == [], (
        f"Barman moved files to errors/ (a duplicate that differs, or an unknown name): {errors}"
    )


def test_postgres_writes_only_into_the_incoming_directory(host):
    incoming = host.file(f"{SPOOL}/incoming")
    assert (incoming.user, incoming.group, incoming.mode) == ("barman", GROUP, 0o3770)
    staging = host.file(f"{SPOOL}/staging")
    assert (staging.user, staging.group, staging.mode) == ("postgres", "postgres", 0o700)

    def as_postgres(cmd: str) -> int:
        return host.run(f"runuser -u postgres -- sh -c {cmd!r}").rc

    assert as_postgres(f"test -w {SPOOL}/incoming") == 0
    for barmans in ["/var/lib/barman", f"/var/lib/barman/{SERVER}/wals", "/etc/barman.d"]:
        assert as_postgres(f"ls {barmans}") != 0, f"postgres can read {barmans}"
    assert as_postgres(f"touch /var/lib/barman/{SERVER}/x") != 0
