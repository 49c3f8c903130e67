"""The firewall role's ruleset, rendered on the controller for a single box and a fleet.

Each case writes an inventory, renders every host's ruleset with the role's own tasks
(render_firewall.yml, no host contacted), reads back from the rendered nftables text
which sources each port is open to, compares that with the exact expected sources, and
has `nft -c` (the real parser, as root) accept each file together with its SSH client.
The filter's refusals of bad input are checked directly. Run:
    pytest tests/roles/test_firewall.py
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from playbook_runner import REPO, run_playbook

RENDER = Path(__file__).with_name("render_firewall.yml")
GROUPS = ("proxy", "app", "db", "cache", "monitoring", "backup")
ANY = "any"


def write_inventory(tmp_path: Path, groups: dict[str, dict]) -> Path:
    hosts = {"irontrack": {"children": {g: {"hosts": h} for g, h in groups.items()}}}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(hosts))
    return inventory


def render(tmp_path: Path, groups: dict[str, dict], extra_vars: dict | None = None) -> Path:
    inventory = write_inventory(tmp_path, groups)
    out = tmp_path / "out"
    (out / "session").mkdir(parents=True)
    values = {"dest": str(out), "firewall_session_dir": str(out / "session"), **(extra_vars or {})}
    result = run_playbook(
        "-i", str(inventory), str(RENDER), "-e", json.dumps(values),
        home=tmp_path, path="/usr/sbin:/usr/bin:/sbin:/bin",
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out


def allowed(ruleset: str) -> dict[str, dict[int, set[str]]]:
    """{proto: {port: sources}} read from the rendered text: every accept rule of the
    input chain with a destination port, its sources taken from the named sets it uses
    (ANY when the rule has no source match). The session sets are left out."""
    sets = {
        m.group(1): {e.strip() for e in m.group(2).split(",")}
        for m in re.finditer(r"set (\w+) \{[^}]*?elements = \{ ([^}]*) \}", ruleset)
    }
    out: dict[str, dict[int, set[str]]] = {}
    rule = re.compile(
        r"^\s*(?:(?:ip|ip6) saddr @(\w+) )?(tcp|udp) dport \{ ([\d, ]+) \} accept", re.M
    )
    for m in rule.finditer(ruleset):
        source_set, proto, ports = m.groups()
        sources = sets[source_set] if source_set else {ANY}
        for port in (int(p) for p in ports.split(",")):
            out.setdefault(proto, {}).setdefault(port, set()).update(sources)
    return out


def nft_check(path: Path) -> None:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(nft).exists():
        pytest.fail("nft not found: scripts/bootstrap.sh installs Debian's nftables")
    result = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"nft -c refused {path.name}:\n{result.stderr}"


def check_all(out: Path, hosts: list[str], session: bool = False) -> None:
    """nft -c on each host's ruleset, loaded with that host's SSH client (as the unit does)."""
    for host in hosts:
        text = (out / f"{host}.nft").read_text()
        text = text.replace(f'include "{out}/session/*.nft"', "")
        whole = out / f"check-{host}.nft"
        whole.write_text(text + (out / "session" / f"{host}.nft").read_text())
        if session:
            assert "add element inet irontrack ssh_session" in whole.read_text()
        nft_check(whole)
        nft_check(out / f"{host}.nft")


def test_single_box_opens_only_ssh_and_the_web(tmp_path):
    out = render(tmp_path, {g: {"box": {"ansible_host": "203.0.113.7"}} for g in GROUPS[:4]})
    text = (out / "box.nft").read_text()
    assert allowed(text) == {"tcp": {22: {ANY}, 80: {ANY}, 443: {ANY}}}
    assert "policy drop;" in text
    assert 'counter name "input_dropped" drop' in text
    assert text.index("table inet irontrack {}") < text.index("delete table inet irontrack")
    assert "flush ruleset" not in text
    assert json.loads((out / "box.json").read_text())["ssh_open"] is True
    check_all(out, ["box"])


def test_single_box_with_a_monitoring_host(tmp_path):
    groups = {g: {"box": {"ansible_host": "203.0.113.7"}} for g in GROUPS[:4]}
    groups["monitoring"] = {"mon": {"ansible_host": "198.51.100.20"}}
    out = render(tmp_path, groups, {"firewall_admin_sources": ["192.0.2.0/24"]})
    assert allowed((out / "box.nft").read_text()) == {
        "tcp": {
            22: {"192.0.2.0/24"},
            80: {ANY},
            443: {ANY},
            **{key: {"198.51.100.20"} for key in (9100, 9113, 9464, 9187, 9127, 9121)},
        }
    }
    # The monitoring host reaches its own Prometheus/Alertmanager over loopback.
    assert allowed((out / "mon.nft").read_text()) == {"tcp": {22: {"192.0.2.0/24"}}}
    check_all(out, ["box", "mon"])


FLEET = {
    # irontrack_private_address (the other roles' per-host setting) when firewall_private_address
    # is unset; firewall_private_address wins when both are set.
    "proxy": {
        "proxy1": {"ansible_host": "edge.example.net", "irontrack_private_address": "10.0.0.10"}
    },
    "app": {
        "app1": {
            "ansible_host": "app1.example.net",
            "irontrack_private_address": "10.0.0.99",
            "firewall_private_address": "10.0.0.11",
        },
        "app2": {"firewall_private_address": ["10.0.0.12", "fd00::12"]},
    },
    "db": {"db1": {"ansible_host": "10.0.0.13"}},
    "cache": {"cache1": {"ansible_host": "10.0.0.14"}},
    "monitoring": {"mon1": {"ansible_host": "10.0.1.20"}},
    "backup": {"backup1": {"ansible_host": "fd00::21"}},
}
ADMIN = {"192.0.2.0/24", "2001:db8::/48"}
MON = {"10.0.1.20"}
APPS = {"10.0.0.11", "10.0.0.12", "fd00::12"}


def test_fleet_opens_each_port_to_its_group_only(tmp_path):
    extra = {
        "firewall_admin_sources": ["192.0.2.0/24", "2001:db8::/48", "192.0.2.9"],
        "app_listen_port": 8001,
        "firewall_session": {"v4": ["198.51.100.99"], "v6": [], "port": 22},
        "firewall_rules_extra": [
            {
                "name": "syslog",
                "ports": [514],
                "proto": "udp",
                "hosts": "all",
                "source_addresses": ["10.9.0.0/16"],
            },
        ],
    }
    out = render(tmp_path, FLEET, extra)
    syslog = {"udp": {514: {"10.9.0.0/16"}}}
    base = {22: ADMIN, 9100: MON}
    expected = {
        "proxy1": {"tcp": {**base, 80: {ANY}, 443: {ANY}, 9113: MON}, **syslog},
        "app1": {"tcp": {**base, 8001: {"10.0.0.10"}, 9464: MON}, **syslog},
        "app2": {"tcp": {**base, 8001: {"10.0.0.10"}, 9464: MON}, **syslog},
        "db1": {
            "tcp": {
                **base,
                22: ADMIN | {"fd00::21"},
                6432: APPS,
                5432: {"fd00::21"},
                9187: MON,
                9127: MON,
            },
            **syslog,
        },  # the backup host restores over SSH (barman restore --remote-ssh-command)
        "cache1": {"tcp": {**base, 6379: APPS, 9121: MON}, **syslog},
        "mon1": {"tcp": {22: ADMIN}, **syslog},
        # db1's archive_command reaches Barman over SSH (barman put-wal)
        "backup1": {"tcp": {**base, 22: ADMIN | {"10.0.0.13"}}, **syslog},
    }
    for host, ports in expected.items():
        assert allowed((out / f"{host}.nft").read_text()) == ports, host
    session = (out / "session" / "db1.nft").read_text()
    assert "add element inet irontrack ssh_session_v4 { 198.51.100.99 . 22 }" in session
    check_all(out, list(expected), session=True)


def test_a_source_host_without_an_address_fails_with_its_name(tmp_path):
    fleet = {**FLEET, "app": {"app1": {"firewall_private_address": ""}}}
    inventory = write_inventory(tmp_path, fleet)
    result = run_playbook(
        "-i", str(inventory), str(RENDER), "-e", f"dest={tmp_path}", "--limit", "db1",
        home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout[-3000:]
    assert "rule pgbouncer: no private address for host app1 (group app)" in result.stdout
    assert not (tmp_path / "db1.nft").exists()


def _filters():
    path = REPO / "roles" / "firewall" / "filter_plugins" / "firewall.py"
    spec = importlib.util.spec_from_file_location("firewall_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("rule", "addresses", "message"),
    [
        (
            {"name": "x", "ports": [1], "source_groups": ["app"]},
            {"a": None},
            "no private address for host a",
        ),
        (
            {"name": "x", "ports": [1], "source_groups": ["app"]},
            {"a": "10.0.0.300"},
            "not an IPv4/IPv6",
        ),
        ({"name": "x", "ports": [70000], "source_any": True}, {}, "not in 1-65535"),
        ({"name": "x", "ports": [], "source_any": True}, {}, "no ports"),
        ({"name": "X-y", "ports": [1], "source_any": True}, {}, "rule name"),
        ({"name": "x", "ports": [1], "proto": "sctp", "source_any": True}, {}, "tcp or udp"),
        ({"name": "x", "ports": [1], "sources": ["10.0.0.1"]}, {}, "unknown keys"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(rule, addresses, message):
    filters = _filters()
    with pytest.raises(Exception, match=message):
        filters.firewall_resolve([rule], {"app": ["a"]}, addresses, "h")


def test_sources_are_split_by_family_and_collapsed():
    filters = _filters()
    got = filters.firewall_split(["10.0.0.0/24", "10.0.0.7", "fd00::1", "10.0.1.0/24"])
    assert got == {"v4": ["10.0.0.0/23"], "v6": ["fd00::1"]}
    assert filters.firewall_is_ip("fe80::1%eth0")
    assert not filters.firewall_is_ip("db.example")
