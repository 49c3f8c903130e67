"""Backups (role backup, Barman): WAL streaming through a slot, timers, the backup-age metric.

Checks the database host (which is also the backup server when the inventory has no `backup`
group, as on the local host): PostgreSQL's WAL settings, the replication slot in use, the
units Barman runs in (the full and the differential backup timers with their schedules),
PostgreSQL's WAL summaries that differentials read, PostgreSQL's archive_command into Barman's
incoming directory (and that postgres can write there and nowhere else of Barman's),
`barman check`, at least one full backup, and the node-exporter textfile.
"""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest
from conftest import expected

SERVER = expected("backup", "backup_server_name")
METRIC = f"{expected('backup', 'backup_metric_dir')}/{expected('backup', 'backup_metric_file')}"
SLOT = expected("backup", "backup_slot_name")
SPOOL = f"{expected('backup', 'backup_archive_spool')}/{SERVER}"
GROUP = expected("backup", "backup_archive_group")
ENCRYPTED = expected("backup", "backup_encryption") == "gpg"
GNUPGHOME = "/var/lib/barman/.gnupg"
# WAL is streamed through the slot only without encryption (encrypted: archive_command alone).
STREAMING = not ENCRYPTED
FULL_SCHEDULE = expected("backup", "backup_full_schedule")
DIFF_SCHEDULE = expected("backup", "backup_diff_schedule")


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


@pytest.mark.skipif(not STREAMING, reason="encrypted backups: WAL through archive_command only")
def test_replication_slot_is_streamed(host):
    row = psql(host, f"SELECT active, slot_type FROM pg_replication_slots WHERE slot_name='{SLOT}'")
    assert row == "t|physical", f"slot {SLOT}: {row!r}"
    senders = "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'barman%'"
    assert psql(host, senders) == "1"


@pytest.mark.skipif(STREAMING, reason="unencrypted backups stream WAL through the slot")
def test_no_stream_and_no_slot_pinning_wal_when_encrypted(host):
    assert psql(host, f"SELECT count(*) FROM pg_replication_slots WHERE slot_name='{SLOT}'") == "0"
    assert not host.file("/etc/systemd/system/irontrack-barman-receive-wal.service").exists
    assert "streaming_archiver = off" in host.file(f"/etc/barman.d/{SERVER}.conf").content_string


@pytest.mark.parametrize(
    "unit",
    [
        *(["irontrack-barman-receive-wal.service"] if STREAMING else []),
        "irontrack-barman-cron.timer",
        "irontrack-backup.timer",
        *(["irontrack-backup-diff.timer"] if DIFF_SCHEDULE else []),
    ],
)
def test_units_enabled_and_active(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running or host.run(f"systemctl is-active {unit}").stdout.strip() == "active"


@pytest.mark.parametrize(
    ("timer", "schedule", "command"),
    [
        ("irontrack-backup.timer", FULL_SCHEDULE, f"backup --wait --wait-timeout 600 {SERVER}"),
        (
            "irontrack-backup-diff.timer",
            DIFF_SCHEDULE,
            f"backup --incremental latest-full --wait --wait-timeout 600 {SERVER}",
        ),
    ],
)
def test_backup_timers_run_their_kind_on_schedule(host, timer, schedule, command):
    if not schedule:
        pytest.skip(f"{timer}: no schedule")
    analyzed = host.run(f"systemd-analyze calendar {shlex.quote(schedule)}")
    assert analyzed.rc == 0, analyzed.stderr
    normalized = re.search(r"Normalized form: (.+)", analyzed.stdout).group(1).strip()
    calendar = host.run(f"systemctl show -P TimersCalendar {timer}").stdout
    assert f"OnCalendar={normalized} ;" in calendar, calendar
    service = timer.replace(".timer", ".service")
    exec_start = host.run(f"systemctl show -P ExecStart {service}").stdout
    assert command in exec_start, exec_start


def test_wal_summaries_feed_the_differentials(host):
    expected_setting = "on" if DIFF_SCHEDULE else "off"
    assert psql(host, "SHOW summarize_wal") == expected_setting
    if DIFF_SCHEDULE:
        # the summarizer keeps up with the WAL written (it has summarized up to a recent LSN)
        state = psql(host, "SELECT summarized_lsn IS NOT NULL FROM pg_get_wal_summarizer_state()")
        assert state == "t"


def test_a_started_postgresql_archives_by_archive_timeout_at_once(host):
    """The unit's drop-in reloads PostgreSQL once it has started: the checkpointer's first
    sleep otherwise ignores archive_timeout (tests/backup measures it after a restart)."""
    post = host.run("systemctl show -P ExecStartPost postgresql@18-main.service").stdout
    assert "pg_ctlcluster --skip-systemctl-redirect 18-main reload" in post, post
    assert "ignore_errors=yes" in post, post


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
    full_age = time.time() - float(values["irontrack_backup_last_full_timestamp_seconds"])
    assert -300 < full_age < 8 * 86400, text
    assert values["irontrack_backup_last_incremental"] in ("0", "1"), text
    assert int(values["irontrack_backup_last_size_bytes"]) > 0, text
    assert int(values["irontrack_backup_last_cluster_size_bytes"]) > 0, text
    assert values["irontrack_backup_last_encrypted"] == ("1" if ENCRYPTED else "0"), text
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


def gpg_barman(host, *args: str):
    return host.run(
        f"runuser -u barman -- env GNUPGHOME={GNUPGHOME} gpg --batch --with-colons "
        + " ".join(args)
    )


def encryption_subkeys(host) -> set[str]:
    """Key ids of the encryption subkeys of the (only) key in Barman's keyring."""
    out = gpg_barman(host, "--list-keys")
    assert out.rc == 0, out.stderr
    fields = [line.split(":") for line in out.stdout.splitlines()]
    assert len([f for f in fields if f[0] == "pub"]) == 1, out.stdout
    return {f[4] for f in fields if f[0] == "sub" and "e" in f[11]}


def public_key_encrypted_for(host, path: str) -> set[str]:
    """Key ids of the public-key encrypted session key packets of a file (gpg --list-packets)."""
    out = host.run(f"gpg --batch --list-packets --homedir /nonexistent {path} 2>&1")
    return set(
        re.findall(r":pubkey enc packet: version \d+, algo \d+, keyid ([0-9A-F]{16})", out.stdout)
    )


@pytest.mark.skipif(not ENCRYPTED, reason="backup_encryption: none")
def test_barman_holds_the_public_key_only(host):
    assert host.file(GNUPGHOME).mode == 0o700
    assert host.file(GNUPGHOME).user == "barman"
    assert encryption_subkeys(host)
    secret = gpg_barman(host, "--list-secret-keys")
    assert secret.stdout.strip() == "", f"a private key in Barman's keyring: {secret.stdout}"
    assert host.run("ls -d /run/irontrack-restore-gnupg.* 2>/dev/null").stdout.strip() == ""
    conf = host.file(f"/etc/barman.d/{SERVER}.conf").content_string
    assert "encryption = gpg" in conf
    assert "backup_compression_format = tar" in conf


@pytest.mark.skipif(not ENCRYPTED, reason="backup_encryption: none")
def test_backups_and_wal_are_encrypted_on_disk(host):
    subkeys = encryption_subkeys(host)
    out = barman(host, "-f", "json", "list-backups", SERVER)
    done = [b for b in json.loads(out.stdout)[SERVER] if b["status"] == "DONE"]
    newest = max(done, key=lambda b: float(b["end_time_timestamp"]))
    data = f"/var/lib/barman/{SERVER}/base/{newest['backup_id']}/data"
    files = host.run(f"find {data} -type f -printf '%f\\n'").stdout.split()
    assert files, data
    # only pg_basebackup's manifest (file names, sizes, checksums: no data) stays plain
    assert [f for f in files if not f.endswith(".gpg")] == ["backup_manifest"], files
    assert "base.tar.gz.gpg" in files, files
    assert public_key_encrypted_for(host, f"{data}/base.tar.gz.gpg") & subkeys
    assert "PGP RSA encrypted session key" in host.run(f"file -b {data}/base.tar.gz.gpg").stdout

    wal = host.run(
        f"find /var/lib/barman/{SERVER}/wals -type f -name '0000*' ! -name '*.backup' "
        "-printf '%T@ %p\\n' | sort -n | tail -1 | cut -d' ' -f2"
    ).stdout.strip()
    assert wal, "no WAL segment in wals/"
    assert public_key_encrypted_for(host, wal) & subkeys, wal
    # no plain WAL lying around in Barman's catalogue
    assert host.run(f"ls -A /var/lib/barman/{SERVER}/streaming 2>/dev/null").stdout.strip() == ""
