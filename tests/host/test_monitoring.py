"""Monitoring: the exporters, the service's metrics listener and Prometheus (roles exporters,
monitoring, app), checked through Prometheus's own HTTP API on the host.

The last test is a real fault: Valkey is stopped, its alert must fire within its `for:` window,
then Valkey is started again and the stack must be healthy (every target up, /health 200, the
alert gone)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from conftest import secret

PROMETHEUS = "http://127.0.0.1:9090"
EXPORTER_PORTS = {
    "node": 9100,
    "postgres": 9187,
    "pgbouncer": 9127,
    "redis": 9121,
    "proxy": 9113,
    "app": 9464,
}
ALERTS = {
    "TargetDown",
    "PostgreSQLDown",
    "ValkeyDown",
    "PgBouncerClientsWaiting",
    "HashQueueSaturated",
    "HighErrorRate",
    "HighLatencyP99",
    "CertificateExpiringSoon",
    "BackupTooOld",
    "FullBackupTooOld",
    "BackupMetricMissing",
    "WalArchivingFailing",
}
RULES = "/etc/prometheus/rules/irontrack.rules.yml"


def api(host, path: str) -> dict:
    out = host.check_output("curl -fsS --max-time 10 %s", PROMETHEUS + path)
    body = json.loads(out)
    assert body["status"] == "success", body
    return body["data"]


def targets(host) -> list[dict]:
    return api(host, "/api/v1/targets?state=active")["activeTargets"]


def wait_all_up(host, timeout: float = 90) -> list[dict]:
    """Every active target up (scrapes happen every 15 s; a target just (re)started may need
    one more round)."""
    deadline = time.monotonic() + timeout
    while True:
        found = targets(host)
        down = [(t["labels"]["job"], t["lastError"]) for t in found if t["health"] != "up"]
        if found and not down:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"targets not up after {timeout:.0f}s: {down}")
        time.sleep(3)


def firing(host, name: str) -> list[dict]:
    return [
        a
        for a in api(host, "/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]


def rule_for_seconds(host, name: str) -> float:
    for group in api(host, "/api/v1/rules?type=alert")["groups"]:
        for rule in group["rules"]:
            if rule["name"] == name:
                return float(rule["duration"])
    pytest.fail(f"rule {name} not loaded")


def test_every_target_is_up(host):
    found = wait_all_up(host)
    jobs = {t["labels"]["job"] for t in found}
    assert jobs >= {"prometheus", *EXPORTER_PORTS}, jobs
    # Targets are named by inventory host, not by address (alerts say which host).
    assert all(":" not in t["labels"]["instance"] for t in found), found


def test_rules_loaded_and_healthy(host):
    assert host.run("/usr/bin/promtool check rules %s", RULES).rc == 0
    groups = api(host, "/api/v1/rules?type=alert")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) >= ALERTS, set(rules)
    assert {r["health"] for r in rules.values()} == {"ok"}, {
        n: r.get("lastError") for n, r in rules.items() if r["health"] != "ok"
    }


def test_nothing_fires_on_a_healthy_host(host):
    wait_all_up(host)
    alerts = api(host, "/api/v1/alerts")["alerts"]
    assert [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"] == [], alerts


def test_exporters_and_prometheus_listen_on_loopback_only(host):
    for port in (*EXPORTER_PORTS.values(), 9090):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port
        assert not host.socket(f"tcp://:::{port}").is_listening, port


def test_exporters_run_unprivileged(host):
    """Every exporter this host should run (each only where its component runs) is up and
    unprivileged; the disabled ones are not installed at all."""
    # The proxy's exporter runs for the nginx flavor only (Angie serves its own metrics).
    nginx = host.package("nginx").is_installed
    units = {
        "prometheus-node-exporter": True,
        "prometheus-postgres-exporter": True,
        "prometheus-redis-exporter": True,
        # The role's own unit (2.1 from PyPI); Debian 12's 1.7 exits against PgBouncer >= 1.8
        # and is removed.
        "pgbouncer-exporter": True,
        "prometheus-pgbouncer-exporter": False,
        "prometheus-nginx-exporter": nginx,
        "prometheus": True,
        "irontrack-metrics": True,
    }
    for unit, wanted in units.items():
        load = host.check_output("systemctl show -p LoadState --value %s.service", unit)
        if not wanted:
            assert load == "not-found", (unit, load)
            continue
        user = host.check_output("systemctl show -p User --value %s.service", unit)
        assert user in ("prometheus", "irontrack"), (unit, user)
        assert host.service(unit).is_running, unit


def test_pgbouncer_exporter_reads_pgbouncer_as_prometheus(host):
    """The pgbouncer target is up in Prometheus, and the pool gauges of our database, read by the
    exporter (as prometheus, on 127.0.0.1:9127) through the stats user, are stored there."""
    found = wait_all_up(host)
    jobs = [t for t in found if t["labels"]["job"] == "pgbouncer"]
    assert [t["scrapeUrl"] for t in jobs] == ["http://127.0.0.1:9127/metrics"], jobs
    pid = host.check_output("systemctl show -p MainPID --value pgbouncer-exporter.service")
    assert host.check_output("ps -o user= -p %s", pid) == "prometheus"
    listeners = host.check_output("ss -Hltnp 'sport = :9127'")
    assert f"pid={pid}," in listeners, listeners
    assert "127.0.0.1:9127" in listeners, listeners
    # The exporter itself: every SHOW succeeded (pgbouncer_up 1), the gauge of our pool there.
    text = host.check_output("curl -fsS --max-time 10 http://127.0.0.1:9127/metrics")
    assert "pgbouncer_up 1.0" in text.splitlines(), text[-2000:]
    gauge = 'pgbouncer_pools_client_waiting_connections{database="irontrack",user="irontrack"}'
    assert gauge in text, text[:2000]
    # Prometheus has it (the series PgBouncerClientsWaiting reads), and our pool is not waiting.
    deadline = time.monotonic() + 60
    while True:
        query = 'pgbouncer_pools_client_waiting_connections{job="pgbouncer",database="irontrack"}'
        result = api(host, "/api/v1/query?query=" + quote(query))["result"]
        if result or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert [r["metric"]["user"] for r in result] == ["irontrack"], result
    assert float(result[0]["value"][1]) == 0, result
    up = api(host, "/api/v1/query?query=pgbouncer_up")["result"]
    assert [r["value"][1] for r in up] == ["1"], up


def test_metrics_not_served_through_the_proxy(host):
    # (no arguments: testinfra does not %-format the command, so a single %)
    out = host.run("curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1/metrics")
    assert out.stdout.strip() in ("404", "405"), out.stdout


def test_app_metrics_come_from_the_live_slot_workers(host):
    for _ in range(20):
        host.check_output("curl -fsS --unix-socket /run/app/granian.sock http://localhost/ping")
    live = host.check_output("readlink /run/app/granian.sock")
    slot = "blue" if "blue" in live else "green"
    files = host.check_output("ls /run/irontrack-metrics/%s", slot).split()
    assert any(f.startswith("histogram_") for f in files), files
    text = host.check_output("curl -fsS --max-time 10 http://127.0.0.1:9464/metrics")
    assert 'irontrack_http_request_duration_seconds_count{method="GET",route="/ping"' in text
    assert "irontrack_db_pool_size" in text


def test_valkey_monitor_user_only_pings_and_reads_info(host):
    password = secret("valkey_monitor_password")

    def cli(*command: str):
        # One quoted argument per word: valkey-cli sends each as one argument of the command.
        return host.run(
            "REDISCLI_AUTH=%s valkey-cli --no-auth-warning --user irontrack_monitor"
            + " %s" * len(command),
            password,
            *command,
        )

    assert cli("PING").stdout.strip() == "PONG"
    assert "valkey_version" in cli("INFO", "server").stdout
    for command in (
        ("GET", "it:s:x"),
        ("CONFIG", "GET", "maxmemory"),
        ("KEYS", "*"),
        ("CLIENT", "LIST"),
    ):
        out = cli(*command)
        assert "NOPERM" in out.stdout + out.stderr, (command, out.stdout)


def test_postgres_monitor_role_is_pg_monitor_only(host):
    sql = (
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, "
        "array_agg(g.rolname ORDER BY g.rolname) FROM pg_roles r "
        "JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE r.rolname = 'irontrack_monitor' GROUP BY 1, 2, 3, 4"
    )
    out = host.check_output("sudo -u postgres psql -XAtc %s", sql)
    assert out == "f|f|f|f|{pg_monitor}", out
    password = secret("postgres_monitor_password")
    psql = "PGPASSWORD=%s psql -XAt -h /var/run/postgresql -U irontrack_monitor -d %s -c %s"
    assert host.run(psql, password, "postgres", "SELECT count(*) FROM pg_stat_activity").rc == 0
    denied = host.run(psql, password, "irontrack", "SELECT 1")
    assert denied.rc != 0, "the monitoring role must not connect to the application database"


def test_pgbouncer_stats_user_reads_but_cannot_administer(host):
    password = secret("pgbouncer_stats_password")
    psql = "PGPASSWORD=%s psql -XAt -h 127.0.0.1 -p 6432 -U irontrack_monitor -d pgbouncer -c %s"
    assert host.run(psql, password, "SHOW POOLS").rc == 0
    denied = host.run(psql, password, "RELOAD")
    assert denied.rc != 0, denied.stdout


def test_certificate_expiry_metric_is_written(host):
    text = host.check_output("cat /var/lib/prometheus/node-exporter/irontrack_tls.prom")
    line = next(
        li for li in text.splitlines() if li.startswith("irontrack_tls_certificate_not_after")
    )
    assert float(line.split()[-1]) > time.time() + 14 * 86400, line


def test_stopping_valkey_fires_its_alert_then_recovers(host):
    """The deliberate fault of the verify stage: ValkeyDown fires within its `for:` window."""
    wait_all_up(host)
    hold = rule_for_seconds(host, "ValkeyDown")
    # Detection: one scrape (15 s) and one evaluation (15 s) after the stop, then `for:`.
    budget = hold + 15 + 15 + 20
    assert firing(host, "ValkeyDown") == []
    host.check_output("systemctl stop valkey-server.service")
    try:
        started = time.monotonic()
        while not firing(host, "ValkeyDown"):
            if time.monotonic() - started > budget:
                pytest.fail(f"ValkeyDown did not fire within {budget:.0f}s")
            time.sleep(3)
        took = time.monotonic() - started
        assert took >= hold, f"fired after {took:.0f}s, before its for: {hold:.0f}s"
        alert = firing(host, "ValkeyDown")[0]
        assert alert["labels"]["severity"] == "critical"
    finally:
        host.check_output("systemctl start valkey-server.service")
    # Healthy again: every target up, the app answers /health, the alert is gone.
    deadline = time.monotonic() + 90
    while True:
        health = host.run(
            "curl -s -o /dev/null -w '%{http_code}' --unix-socket /run/app/granian.sock "
            "http://localhost/health"
        ).stdout.strip()
        value = api(host, "/api/v1/query?query=redis_up")["result"]
        if health == "200" and value and value[0]["value"][1] == "1":
            break
        if time.monotonic() > deadline:
            pytest.fail(f"not healthy after Valkey restart: /health {health}, redis_up {value}")
        time.sleep(3)
    wait_all_up(host)
    deadline = time.monotonic() + 60
    while firing(host, "ValkeyDown") and time.monotonic() < deadline:
        time.sleep(3)
    assert firing(host, "ValkeyDown") == []
