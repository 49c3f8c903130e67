"""The firewall role: table inet irontrack loaded, input policy drop, and, seen from the
controller (local host only: the docker backend), 443 answering through the published
port while a port that is not open gets no answer at all (dropped, not refused) and the
drop counter rises."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
from conftest import expected

UNIT = expected("firewall", "firewall_unit")
RULESET = expected("firewall", "firewall_ruleset_file")


def _ruleset(host) -> list[dict]:
    out = host.check_output("nft -j list table inet irontrack")
    return json.loads(out)["nftables"]


def _dropped(host) -> int:
    out = json.loads(host.check_output("nft -j list counter inet irontrack input_dropped"))
    return next(o["counter"]["packets"] for o in out["nftables"] if "counter" in o)


@pytest.fixture(scope="module")
def container_ip(host) -> str:
    """The local host's address on its docker network, seen from the controller."""
    if host.backend.NAME != "docker":
        pytest.skip("controller probes need the local host (docker backend)")
    name = host.backend.name
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    out = subprocess.run(
        ["docker", "inspect", "-f", template, name], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out, f"{name} has no address on a docker network"
    return out[0]


def test_nftables_installed_and_unit_enabled(host):
    assert host.package("nftables").is_installed
    assert host.service(UNIT).is_enabled
    with host.sudo():
        assert host.file(RULESET).mode == 0o600
        assert host.run(f"nft -c -f {RULESET}").rc == 0


def test_table_loaded_with_input_policy_drop(host):
    with host.sudo():
        objects = _ruleset(host)
    chains = [o["chain"] for o in objects if "chain" in o]
    inputs = [c for c in chains if c.get("hook") == "input"]
    assert len(inputs) == 1, chains
    assert inputs[0]["policy"] == "drop"
    assert inputs[0]["family"] == "inet"
    assert any("counter" in o and o["counter"]["name"] == "input_dropped" for o in objects)


def test_only_expected_tables_touched(host):
    """The role owns one table; the ruleset file never flushes the others."""
    with host.sudo():
        text = host.file(RULESET).content_string
    assert "flush ruleset" not in text
    assert "table inet irontrack {}\ndelete table inet irontrack\n" in text


def test_https_answers_from_the_controller(container_ip):
    port = int(os.environ.get("IRONTRACK_HTTPS_PORT", "8443"))
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with socket.create_connection((container_ip, 443), timeout=5):
        pass


@pytest.mark.parametrize("port", [6379, 6432, 5432])
def test_closed_port_is_dropped_from_the_controller(host, container_ip, port):
    with host.sudo():
        before = _dropped(host)
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # dropped: no RST (refused) and no connection
        socket.create_connection((container_ip, port), timeout=2).close()
    assert time.monotonic() - started >= 1.9
    with host.sudo():
        assert _dropped(host) > before
