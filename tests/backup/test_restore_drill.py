"""The restore drill (issue 12), run by Molecule's verify against the local host.

1. Recovery point: a signup on a quiet server, just restarted, reaches Barman's WAL archive
   within 60 s (archive_timeout + Barman's cron interval), measured, with no forced WAL switch.
2. A failing archive_command is visible: PostgreSQL counts it and `barman check` names it;
   archiving resumes by itself once the cause is gone.
   A stopped WAL stream is visible: `barman check` fails and names it (unencrypted backups only:
   encrypted ones take WAL through archive_command alone).
3. Point-in-time restore: users A, a full backup, users B, a differential backup (block-level
   incremental on the full one), users B2, note the time, users C, then playbooks/restore.yml
   to the noted time: it restores the differential combined with its full backup, exactly A,
   B and B2 exist (their logins work, C's do not) and /health answers 200. With encrypted
   backups (backup_encryption: gpg) the restore decrypts with the private key
   playbooks/restore.yml brings, and leaves no key behind.
4. The newest state of a live database: users E, then playbooks/restore.yml without a target
   time: writes are held, E logs in, a new timeline, nothing in Barman's errors/.
5. A restore that fails puts the host back: PostgreSQL down, a target time past everything
   archived; the play fails and says why, the old cluster runs again, users F log in.

Users are created and logged in through the application's own socket on the host (no rate
limit in the way), the database is read as postgres, the restore runs the real playbook.
The figures go to results/backup-drill-<host>.json (the README quotes them).
Usage: IRONTRACK_INVENTORY=inventories/local pytest tests/backup --hosts=docker://$IRONTRACK_INSTANCE
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = "irontrack"
BARMAN_HOME = "/var/lib/barman"
INCOMING = f"/var/lib/barman-wal/{SERVER}/incoming"
SOCKET = "/run/app/granian.sock"
PG_UNIT = "postgresql@18-main"
RESULTS: dict[str, float | int | str] = {}

# Runs with the host's python3: POST each email to signup or login through the app's socket,
# print "<email> <status>" per line.
CLIENT = r"""
import http.client, json, socket, sys
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(sys.argv[1])
action, password = sys.argv[2], sys.argv[3]
for email in sys.argv[4:]:
    c = Conn("localhost", timeout=30)
    if action == "health":
        c.request("GET", "/health")
    else:
        body = json.dumps({"email": email, "password": password})
        c.request("POST", "/api/v1/access/" + action, body=body,
                  headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); c.close()
    print(email, r.status)
"""


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module", autouse=True)
def write_results(host):
    yield
    if RESULTS:
        name = host.backend.get_hostname()
        out = REPO / "results" / f"backup-drill-{name}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(RESULTS, indent=2) + "\n")
        print(f"\nbackup drill: {json.dumps(RESULTS)}")


PASSWORD = "drill-password-0123456789"


def api(host, action: str, emails: list[str], password: str = PASSWORD) -> dict[str, int]:
    cmd = ["python3", "-c", CLIENT, SOCKET, action, password, *emails]
    out = host.run(shlex.join(cmd))
    assert out.rc == 0, out.stderr
    return {line.split()[0]: int(line.split()[1]) for line in out.stdout.splitlines()}


def psql(host, sql: str, db: str = "postgres") -> str:
    out = host.run(f"runuser -u postgres -- psql --no-psqlrc -d {db} -Atc {shlex.quote(sql)}")
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def barman(host, *args: str):
    return host.run("runuser -u barman -- /opt/barman/bin/barman " + shlex.join(args))


def users(run: str, group: str, n: int = 2) -> list[str]:
    return [f"drill-{run}-{group}{i}@example.com" for i in range(n)]


def archived(host, segment: str) -> bool:
    out = host.run(f"ls {BARMAN_HOME}/{SERVER}/wals/{segment[:16]}/ 2>/dev/null")
    return any(name.startswith(segment) for name in out.stdout.split())


def test_recovery_point_on_a_quiet_server(host, run_id):
    """The segment holding a fresh commit is in the archive within 60 s, with no forced switch,
    right after PostgreSQL (re)started as after a reboot: the checkpointer's first sleep would
    otherwise last checkpoint_timeout (5 min), not archive_timeout (the unit's drop-in wakes it)."""
    assert host.run(f"systemctl restart {PG_UNIT}").rc == 0
    deadline = time.monotonic() + 60  # PgBouncer drops its connections to the old server first
    while (
        time.monotonic() < deadline
        and [api(host, "health", ["-"]) for _ in range(2)] != [{"-": 200}] * 2
    ):
        time.sleep(1)
    assert api(host, "signup", users(run_id, "rpo", 1)) == {users(run_id, "rpo", 1)[0]: 201}
    committed = time.monotonic()
    segment = psql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    deadline = committed + 120
    while not archived(host, segment) and time.monotonic() < deadline:
        time.sleep(0.5)
    elapsed = time.monotonic() - committed
    assert archived(host, segment), f"{segment} not archived after {elapsed:.0f} s"
    RESULTS["recovery_point_s"] = round(elapsed, 1)
    assert elapsed <= 60, f"recovery point {elapsed:.0f} s > 60 s"


def archive_failures(host) -> int:
    return int(psql(host, "SELECT failed_count FROM pg_stat_archiver"))


def a_failing_archive_command_is_loud(db, backup, app, run_id: str, block: str, unblock: str):
    """While ``block`` holds (a shell command on the backup server) archive_command fails:
    PostgreSQL counts it and `barman check` names it. After ``unblock`` archiving resumes by
    itself: PostgreSQL retries the kept segment, and a new segment wakes its archiver at once.
    ``db``, ``backup`` and ``app`` are the database, Barman and application hosts (one host
    here, three in the fleet)."""
    before = archive_failures(db)
    assert backup.run(block).rc == 0
    try:
        assert api(app, "signup", users(run_id, "arch", 1)) == {users(run_id, "arch", 1)[0]: 201}
        psql(db, "SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while archive_failures(db) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert archive_failures(db) > before, "the archive command did not fail"
        out = barman(backup, "check", SERVER)
        assert out.rc != 0
        assert re.search(r"continuous archiving: FAILED", out.stdout), out.stdout
    finally:
        assert backup.run(unblock).rc == 0
    assert api(app, "signup", users(run_id, "arch2", 1)) == {users(run_id, "arch2", 1)[0]: 201}
    psql(db, "SELECT pg_switch_wal()")
    deadline = time.monotonic() + 120
    while (out := barman(backup, "check", SERVER)).rc != 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert out.rc == 0, out.stdout


def test_a_failing_archive_command_fails_barman_check(host, run_id):
    """archive_command cannot write into incoming/ (its group, postgres's, loses write)."""
    a_failing_archive_command_is_loud(
        host, host, host, run_id, block=f"chmod 1750 {INCOMING}", unblock=f"chmod 3770 {INCOMING}"
    )


def encrypted(host) -> bool:
    """Barman encrypts here (backup_encryption: gpg): WAL comes by archive_command only."""
    return "encryption = gpg" in host.file(f"/etc/barman.d/{SERVER}.conf").content_string


def test_a_stopped_wal_stream_fails_barman_check(host):
    if encrypted(host):
        pytest.skip("encrypted backups: no WAL stream (archive_command only)")
    units = "irontrack-barman-cron.timer irontrack-barman-receive-wal.service"
    assert host.run(f"systemctl stop {units}").rc == 0
    try:
        out = barman(host, "check", SERVER)
        assert out.rc != 0
        assert "receive-wal running: FAILED" in out.stdout, out.stdout
    finally:
        assert host.run(f"systemctl start {units}").rc == 0
    deadline = time.monotonic() + 60
    while (out := barman(host, "check", SERVER)).rc != 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert out.rc == 0, out.stdout


class Restored(NamedTuple):
    seconds: float  # end to end
    paused_s: int  # PgBouncer held its clients, as the play reports it
    what: str  # "to <time>", "to the newest state, WAL position …", as the play reports it
    backup_id: str  # the backup Barman restored (a differential is combined with its full one)


def restore_play(host, *extra: str, inventory: str | None = None) -> subprocess.CompletedProcess:
    """playbooks/restore.yml (``extra``: its -e options), whatever its outcome. Without
    ``inventory``: the local inventory (IRONTRACK_INVENTORY) pointed at ``host``."""
    env = dict(os.environ)
    if inventory is None:
        env["IRONTRACK_INSTANCE"] = host.backend.get_hostname()
        inventory = os.environ.get("IRONTRACK_INVENTORY", "inventories/local")
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            inventory,
            "playbooks/restore.yml",
            "-e",
            "restore_confirm=yes",
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def said(play: subprocess.CompletedProcess) -> str:
    """What the play printed on either stream (a failed task's result goes to stderr where
    display_failed_stderr is on, as under Molecule), with the callback's line folding undone."""
    return " ".join((play.stdout + "\n" + play.stderr).replace("\\\n", "").split())


def restore(host, *extra: str, inventory: str | None = None) -> Restored:
    """playbooks/restore.yml, which must succeed; what it reports."""
    started = time.monotonic()
    play = restore_play(host, *extra, inventory=inventory)
    seconds = round(time.monotonic() - started, 1)
    assert play.returncode == 0, play.stdout[-4000:] + play.stderr[-2000:]
    text = said(play)
    paused = re.search(r"PgBouncer paused for (\d+) s", text)
    assert paused, play.stdout[-2000:]
    what = re.search(r"Restored \S+ (.*?);", text)
    assert what, play.stdout[-2000:]
    used = re.search(r"from backup (\S+);", text)
    assert used, play.stdout[-2000:]
    return Restored(seconds, int(paused.group(1)), what.group(1), used.group(1))


def take_backup(host, kind: str) -> tuple[dict, float]:
    """Start the full or the differential backup unit on the backup server as its timer does;
    the new DONE entry of the catalogue and the seconds it took."""
    unit = "irontrack-backup.service" if kind == "full" else "irontrack-backup-diff.service"
    started = time.monotonic()
    out = host.run(f"systemctl start {unit}")
    seconds = round(time.monotonic() - started, 1)
    assert out.rc == 0, out.stderr + host.run(f"journalctl -u {unit} -n 30 --no-pager").stdout
    catalogue = json.loads(barman(host, "-f", "json", "list-backups", SERVER).stdout)[SERVER]
    done = [x for x in catalogue if x["status"] == "DONE"]
    return max(done, key=lambda x: float(x["end_time_timestamp"])), seconds


def take_and_record_backup(host, kind: str) -> dict:
    """take_backup(), its time and size noted in the drill's results."""
    newest, seconds = take_backup(host, kind)
    RESULTS[f"{kind}_backup_s"] = seconds
    RESULTS[f"{kind}_backup_size_bytes"] = int(newest["size_bytes"])
    return newest


def test_point_in_time_restore(host, run_id):
    """Users A, a full backup, users B, a differential backup, users B2, the target time, users
    C; the restore to that time starts from the differential (Barman decrypts it and its full
    backup and combines them with pg_combinebackup) and replays WAL up to the target: exactly
    A, B and B2 exist and log in."""
    a, b, b2, c = (users(run_id, g) for g in ("a", "b", "b2", "c"))
    RESULTS["encryption"] = "gpg" if encrypted(host) else "none"
    assert set(api(host, "signup", a).values()) == {201}
    full = take_and_record_backup(host, "full")
    assert full["backup_type"] == "full", full

    assert set(api(host, "signup", b).values()) == {201}
    diff = take_and_record_backup(host, "diff")
    assert diff["backup_type"] == "incremental", diff
    shown = json.loads(barman(host, "-f", "json", "show-backup", SERVER, diff["backup_id"]).stdout)
    chain = shown[SERVER]["catalog_information"]
    assert chain["parent_backup_id"] == chain["root_backup_id"] == full["backup_id"], chain

    assert set(api(host, "signup", b2).values()) == {201}
    time.sleep(0.5)
    target = psql(host, "SELECT clock_timestamp()")
    time.sleep(0.5)
    assert set(api(host, "signup", c).values()) == {201}
    RESULTS["target_time"] = target

    done = restore(host, "-e", json.dumps({"restore_target_time": target}))
    RESULTS["restore_playbook_s"] = done.seconds
    RESULTS["pgbouncer_paused_s"] = done.paused_s
    assert done.backup_id == diff["backup_id"], done

    like = f"drill-{run_id}-%"
    rows = psql(host, f"SELECT email FROM users WHERE email LIKE '{like}'", db="irontrack")
    present = set(rows.split())
    # the users of the recovery-point and archive-failure tests, created before A
    present -= {*users(run_id, "rpo", 1), *users(run_id, "arch", 1), *users(run_id, "arch2", 1)}
    assert present == set(a + b + b2)

    assert set(api(host, "login", a + b + b2).values()) == {200}
    assert set(api(host, "login", c).values()) == {401}
    assert api(host, "health", ["-"]) == {"-": 200}
    # the private key was on the host for the restore only
    assert host.run("ls -d /run/irontrack-restore-gnupg.* 2>/dev/null").stdout.strip() == ""
    secret = host.run(
        "runuser -u barman -- env GNUPGHOME=/var/lib/barman/.gnupg gpg --batch --list-secret-keys"
    )
    assert secret.stdout.strip() == "", secret.stdout


def settled_errors(db, backup, incoming: str = INCOMING) -> list[str]:
    """A checkpoint (where PostgreSQL would queue segments again), then PostgreSQL's archive
    queue emptied and Barman's ``incoming`` filed: what is in Barman's errors/ then."""
    psql(db, "CHECKPOINT")
    ready = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
    deadline = time.monotonic() + 60
    while psql(db, ready) != "0" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert psql(db, ready) == "0", "PostgreSQL did not archive its queue"
    deadline = time.monotonic() + 60
    while backup.run(f"ls {incoming}").stdout.split() and time.monotonic() < deadline:
        barman(backup, "archive-wal", SERVER)
        time.sleep(1)
    assert backup.run(f"ls {incoming}").stdout.split() == []
    return backup.run(f"ls {BARMAN_HOME}/{SERVER}/errors/ 2>/dev/null").stdout.split()


def timeline(host) -> int:
    return int(psql(host, "SELECT timeline_id FROM pg_control_checkpoint()"))


def test_restore_to_the_newest_state_holds_writes(host, run_id):
    """restore.yml without a target time while PostgreSQL answers: PgBouncer holds every write
    first, the restore recovers to the WAL position read then (--target-lsn) and promotes to a
    new timeline, so the old cluster's later WAL never meets the restored cluster's under one
    name: users E (signed up just before) log in, nothing lands in Barman's errors/."""
    e = users(run_id, "e")
    assert set(api(host, "signup", e).values()) == {201}
    before = timeline(host)
    done = restore(host)
    RESULTS["newest_restore_playbook_s"] = done.seconds
    RESULTS["newest_pgbouncer_paused_s"] = done.paused_s
    assert done.what.startswith("to the newest state, WAL position"), done.what
    assert timeline(host) > before
    assert set(api(host, "login", e).values()) == {200}
    assert api(host, "health", ["-"]) == {"-": 200}
    errors = settled_errors(host, host)
    assert errors == [], errors
    assert host.run("ls -d /run/irontrack-restore-gnupg.* 2>/dev/null").stdout.strip() == ""


def test_a_restore_that_cannot_reach_its_target_puts_the_old_cluster_back(host, run_id):
    """PostgreSQL is down (stopped here after users F signed up) and the target time is later
    than anything the archive holds: the restored cluster cannot reach it ("recovery ended
    before configured recovery target was reached"). The play fails and says so, and leaves
    the host as it was: the old data directory back in place and running, F log in, the
    failed cluster kept aside, PgBouncer resumed, Barman's maintenance running, `barman check`
    clean."""
    f = users(run_id, "f")
    assert set(api(host, "signup", f).values()) == {201}
    assert host.run(f"systemctl stop {PG_UNIT}").rc == 0
    try:
        target = host.run("date --utc '+%Y-%m-%d %H:%M:%S.%6N+00'").stdout.strip()
        play = restore_play(host, "-e", json.dumps({"restore_target_time": target}))
    finally:
        if host.run(f"systemctl is-active --quiet {PG_UNIT}").rc != 0:
            host.run(f"systemctl start {PG_UNIT}")
    assert play.returncode != 0, play.stdout[-3000:]
    text = said(play)
    assert "Nothing was switched: the old data directory is back in place" in text, text[-4000:]
    assert "runs on it again" in text, text[-3000:]
    assert "The archive holds no transaction committed after the target time" in text
    assert host.run(f"systemctl is-active {PG_UNIT}").stdout.strip() == "active"
    assert set(api(host, "login", f).values()) == {200}
    assert api(host, "health", ["-"]) == {"-": 200}
    kept = re.search(r"kept at (/var/lib/postgresql/18/main\.failed-restore-[0-9TZ]+)", text)
    assert kept, play.stdout[-3000:]
    assert host.file(kept.group(1)).is_directory
    host.run(f"rm -rf {kept.group(1)}")
    assert host.service("irontrack-barman-cron.timer").is_running
    assert host.run("ls -d /run/irontrack-restore-gnupg.* 2>/dev/null").stdout.strip() == ""
    out = barman(host, "check", SERVER)
    assert out.rc == 0, out.stdout


def test_a_restore_with_another_private_key_is_refused(host, tmp_path):
    """A private key of another key pair (vault holding the wrong one) is refused before
    anything is paused or stopped: the play says so, PostgreSQL stays on its timeline."""
    if not encrypted(host):
        pytest.skip("unencrypted backups need no private key")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    gpg += ["--passphrase", "other-passphrase-0123456789"]
    subprocess.run(
        [*gpg, "--quick-gen-key", "other <other@example.invalid>", "default", "default", "never"],
        check=True,
        capture_output=True,
    )
    private = subprocess.run(
        [*gpg, "--armor", "--export-secret-keys"], check=True, capture_output=True, text=True
    ).stdout
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    before = timeline(host)
    play = restore_play(
        host,
        "-e",
        json.dumps(
            {
                "irontrack_backup_gpg_private_key": private,
                "irontrack_backup_gpg_passphrase": "other-passphrase-0123456789",
            }
        ),
    )
    assert play.returncode != 0, play.stdout[-3000:]
    assert "is not the one of the backup key" in said(play), said(play)[-3000:]
    assert "Pause PgBouncer" not in play.stdout
    assert "Stop PostgreSQL" not in play.stdout
    assert timeline(host) == before
    assert api(host, "health", ["-"]) == {"-": 200}
