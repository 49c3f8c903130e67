"""ACME for real: certbot (nginx flavor) issues and renews the proxy's certificate through
a local ACME server, with real HTTP-01 validation on the proxy's port 80.

pebble (Debian's ACME test server) runs on the host (tests/acme/pebble.yml); the edge play
of playbooks/site.yml is re-run with certs_provider=acme pointed at it. Then:
  1. the certificate is issued by pebble for the test name and served on 443;
  2. playbooks/smoke.yml passes against the name, with pebble's root as the only trust anchor;
  3. a second run of the edge play changes nothing;
  4. `certbot renew --force-renewal` (what certbot.timer runs, forced) re-validates, the
     deploy hook validates and reloads the proxy, the new certificate is served, and a
     client looping on /ping through the proxy during it sees no failed request.
Afterwards the host is put back as its inventory says (mkcert) and pebble is removed.

Needs a provisioned local host (make up); about 2-3 minutes:
    pytest tests/acme --hosts=docker://irontrack-local
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVENTORY = os.environ.get("IRONTRACK_INVENTORY", str(REPO / "inventories" / "local"))
NAME = "auth.irontrack.test"
PEBBLE_DIR = "/etc/irontrack-test-pebble"
LIVE = "/etc/letsencrypt/live/irontrack"
CERT_FILE = "/etc/ssl/irontrack/irontrack.pem"
LOOP_SCRIPT = REPO / "tests" / "redeploy" / "ping_loop.py"
ACME_VARS = {
    "certs_provider": "acme",
    "certs_acme_client": "certbot",
    "certs_names": [NAME],
    "certs_acme_directory": "https://localhost:14000/dir",
    "certs_acme_server_ca_file": f"{PEBBLE_DIR}/tls-ca.pem",
    "certs_acme_email": "",
}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)", re.M)


def playbook(path: str, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook against the local inventory (its one host is the host under test)."""
    command = ["ansible-playbook", "-i", INVENTORY, str(REPO / path), *args]
    # Facts once per run, not once per play (site.yml --tags edge still walks every play).
    env = {**os.environ, "ANSIBLE_GATHERING": "smart"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, env=env)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    return result


def changed(result: subprocess.CompletedProcess) -> int:
    recaps = RECAP.findall(result.stdout)
    assert recaps, result.stdout[-2000:]
    return sum(int(r[2]) for r in recaps)


def served(host) -> dict:
    """The certificate the proxy serves for NAME, verified against pebble's root."""
    script = f"""
import json, socket, ssl
c = ssl.create_default_context(cafile={PEBBLE_DIR + "/issuer-root.pem"!r})
raw = socket.create_connection(("127.0.0.1", 443), timeout=10)
s = c.wrap_socket(raw, server_hostname={NAME!r})
cert = s.getpeercert()
print(json.dumps({{"serial": cert["serialNumber"],
    "issuer": [v for rdn in cert["issuer"] for k, v in rdn if k == "commonName"],
    "sans": [v for _, v in cert["subjectAltName"]]}}))
"""
    result = host.run("python3 -c %s", script)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def acme(host, tmp_path_factory):
    """pebble on the host and the edge play switched to ACME; restored afterwards."""
    if not host.file("/etc/nginx/nginx.conf").exists:
        pytest.skip("the ACME test runs on a converged local host with the nginx flavor")
    tmp = tmp_path_factory.mktemp("acme")
    extra = tmp / "acme.json"
    extra.write_text(json.dumps(ACME_VARS))
    try:
        ok(playbook("tests/acme/pebble.yml"))
        root = tmp / "pebble-root.pem"
        root.write_text(host.file(f"{PEBBLE_DIR}/issuer-root.pem").content_string)
        yield {"extra": f"@{extra}", "root": root}
    finally:
        restore = playbook("playbooks/site.yml", "--tags", "edge")
        removed = playbook("tests/acme/pebble.yml", "-e", "acme_test_state=absent")
        ok(restore)
        ok(removed)


@pytest.fixture(scope="module")
def issued(host, acme):
    result = ok(playbook("playbooks/site.yml", "--tags", "edge", "-e", acme["extra"]))
    return {"first_run": result, "cert": served(host)}


def test_certificate_issued_by_the_acme_server(host, issued):
    cert = issued["cert"]
    assert cert["sans"] == [NAME]
    assert cert["issuer"], cert
    assert cert["issuer"][0].startswith("Pebble Intermediate CA"), cert
    # The proxy serves the lineage's certificate, installed by the deploy hook.
    assert host.file(CERT_FILE).content_string == host.file(f"{LIVE}/fullchain.pem").content_string
    renewal = host.file("/etc/letsencrypt/renewal/irontrack.conf").content_string
    assert "authenticator = webroot" in renewal
    assert "server = https://localhost:14000/dir" in renewal
    assert re.search(r"^renew_hook = /usr/local/lib/irontrack/certbot-deploy-hook$", renewal, re.M)
    timer = host.service("certbot.timer")
    assert timer.is_enabled
    assert timer.is_running


def test_http_01_webroot_and_redirect(host, issued):
    """Port 80 serves the challenge directory and redirects everything else."""
    probe = host.run(
        "sh -c %s",
        "mkdir -p /var/www/irontrack-acme/.well-known/acme-challenge && "
        "echo token-probe > /var/www/irontrack-acme/.well-known/acme-challenge/probe && "
        f"curl -s http://{NAME}/.well-known/acme-challenge/probe; "
        f"curl -s -o /dev/null -w ' %{{http_code}} %{{redirect_url}}' http://{NAME}/ping; "
        "rm -f /var/www/irontrack-acme/.well-known/acme-challenge/probe",
    )
    assert probe.stdout.split() == ["token-probe", "301", f"https://{NAME}/ping"], probe.stdout


def test_smoke_against_the_acme_certificate(host, acme, issued):
    ok(playbook("playbooks/smoke.yml", "-e", acme["extra"], "-e", f"smoke_ca_file={acme['root']}"))


def test_reconverge_changes_nothing(host, acme, issued):
    result = ok(playbook("playbooks/site.yml", "--tags", "edge", "-e", acme["extra"]))
    assert changed(result) == 0, result.stdout[-5000:]


def test_forced_renewal_reloads_without_dropping_requests(host, acme, issued):
    before = served(host)
    unit = f"irontrack-acme-loop-{os.getpid()}"
    started = host.run(
        f"systemd-run --quiet --collect --unit {unit} -p User=nobody -p Group=nogroup "
        f"/usr/bin/python3 -c %s https://{NAME}/ping --interval 0.05 "
        f"--cafile {PEBBLE_DIR}/issuer-root.pem",
        LOOP_SCRIPT.read_text(),
    )
    assert started.rc == 0, started.stderr
    time.sleep(2)
    try:
        renew = host.run(
            f"REQUESTS_CA_BUNDLE={PEBBLE_DIR}/tls-ca.pem "
            "certbot renew --force-renewal --cert-name irontrack --no-random-sleep-on-renew"
        )
        time.sleep(2)
    finally:
        host.run(f"systemctl stop {unit}")
    assert renew.rc == 0, renew.stdout + renew.stderr
    assert "deploy hook: installed" in renew.stdout + renew.stderr, renew.stdout + renew.stderr
    summary = None
    for _ in range(20):
        for line in host.run(f"journalctl --no-pager -o cat -u {unit}").stdout.splitlines():
            if line.startswith("PING-LOOP "):
                summary = json.loads(line.removeprefix("PING-LOOP "))
        if summary:
            break
        time.sleep(0.5)
    assert summary, f"no summary from {unit}"
    assert summary["requests"] > 20, summary
    assert summary["failures"] == 0, summary
    after = served(host)
    assert after["serial"] != before["serial"], "the proxy still serves the old certificate"
    assert after["sans"] == [NAME]
