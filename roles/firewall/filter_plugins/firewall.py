"""Filters of the firewall role: rules from inventory groups to per-family address sets.

Every allowed source is checked here (an address, a network, or a host's
`firewall_private_address`), so a typo fails the play on the controller with the rule and
host it belongs to, before any ruleset is written.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,24}$")
_RULE_KEYS = {"name", "ports", "proto", "hosts", "source_groups", "source_addresses", "source_any"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: Any, where: str) -> Network:
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text.split("%", 1)[0], strict=False)
    except ValueError:
        raise AnsibleFilterError(
            f"firewall: {where}: {text!r} is not an IPv4/IPv6 address or network"
        ) from None


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | int):
        return [value]
    return list(value)


def _render(nets: Iterable[Network], version: int) -> list[str]:
    picked = [n for n in nets if n.version == version]
    collapsed = ipaddress.collapse_addresses(picked)  # type: ignore[arg-type]
    out = []
    for n in sorted(collapsed):
        out.append(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n))
    return out


def firewall_is_ip(value: Any) -> bool:
    """True when value is a literal IPv4/IPv6 address (ansible_host may be a name)."""
    try:
        ipaddress.ip_address(str(value).split("%", 1)[0])
    except ValueError:
        return False
    return True


def firewall_split(values: Any, where: str = "address") -> dict[str, list[str]]:
    """Addresses/networks → {"v4": [...], "v6": [...]}, collapsed and sorted."""
    nets = [_network(v, where) for v in _as_list(values)]
    return {"v4": _render(nets, 4), "v6": _render(nets, 6)}


def firewall_monitoring_rules(ports_by_group: Mapping[str, Any], monitoring_group: str) -> list:
    """One rule per group of firewall_monitoring_ports, open to the monitoring hosts."""
    return [
        {
            "name": f"monitoring_{group}",
            "ports": _as_list(ports),
            "hosts": group,
            "source_groups": [monitoring_group],
        }
        for group, ports in ports_by_group.items()
        if _as_list(ports)
    ]


def firewall_source_hosts(rules: Iterable[Mapping], groups: Mapping[str, list]) -> list[str]:
    """Every inventory host some rule takes its sources from."""
    hosts = {h for r in rules for g in _as_list(r.get("source_groups")) for h in groups.get(g, [])}
    return sorted(hosts)


def _ports(rule: Mapping, name: str) -> list[int]:
    ports = []
    for p in _as_list(rule.get("ports")):
        try:
            port = int(p)
        except (TypeError, ValueError):
            port = 0
        if not 1 <= port <= 65535:
            raise AnsibleFilterError(f"firewall: rule {name}: port {p!r} is not in 1-65535")
        ports.append(port)
    if not ports:
        raise AnsibleFilterError(f"firewall: rule {name}: no ports")
    return sorted(set(ports))


def firewall_resolve(
    rules: Iterable[Mapping],
    groups: Mapping[str, list],
    addresses: Mapping[str, Any],
    host: str,
) -> list[dict]:
    """The rules that apply on `host`, each with its exact IPv4/IPv6 sources.

    A rule applies when `host` is in its `hosts` group ("all": always). Its sources are the
    private addresses of the hosts of `source_groups` except `host` itself (it reaches
    itself over loopback), plus `source_addresses`; a rule left without any source opens
    nothing and is omitted. `source_any` opens the ports to every source.
    """
    out: list[dict] = []
    seen: set[str] = set()
    for rule in rules:
        name = str(rule.get("name", ""))
        if not _NAME.match(name) or name in seen:
            raise AnsibleFilterError(
                f"firewall: rule name {name!r} must be unique, lowercase, start with a letter "
                "and hold only a-z, 0-9 and _ (at most 25 characters)"
            )
        seen.add(name)
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise AnsibleFilterError(f"firewall: rule {name}: unknown keys {sorted(unknown)}")
        proto = rule.get("proto", "tcp")
        if proto not in ("tcp", "udp"):
            raise AnsibleFilterError(f"firewall: rule {name}: proto must be tcp or udp")
        ports = _ports(rule, name)
        target = rule.get("hosts", "all")
        if target != "all" and host not in groups.get(target, []):
            continue
        any_source = bool(rule.get("source_any", False))
        nets: list[Network] = [
            _network(a, f"rule {name} source_addresses")
            for a in _as_list(rule.get("source_addresses"))
        ]
        for group in _as_list(rule.get("source_groups")):
            for source in groups.get(group, []):
                if source == host:
                    continue
                found = _as_list(addresses.get(source))
                if not found:
                    raise AnsibleFilterError(
                        f"firewall: rule {name}: no private address for host {source} (group "
                        f"{group}): set firewall_private_address for it, or give it an IP "
                        "ansible_host, or gather its facts"
                    )
                nets += [_network(a, f"firewall_private_address of {source}") for a in found]
        v4, v6 = _render(nets, 4), _render(nets, 6)
        if not (any_source or v4 or v6):
            continue
        entry = {"name": name, "proto": proto, "ports": ports, "any": any_source}
        entry.update({"v4": [] if any_source else v4, "v6": [] if any_source else v6})
        out.append(entry)
    return out


class FilterModule:
    def filters(self) -> dict:
        return {
            "firewall_is_ip": firewall_is_ip,
            "firewall_split": firewall_split,
            "firewall_monitoring_rules": firewall_monitoring_rules,
            "firewall_source_hosts": firewall_source_hosts,
            "firewall_resolve": firewall_resolve,
        }
