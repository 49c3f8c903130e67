"""Shared helpers for the host-state suite.

Run against the local host:   pytest tests/host --hosts=docker://irontrack-local
Run against a real host:      pytest tests/host --hosts=ssh://deploy@host --sudo
                              (or --connection=ansible --ansible-inventory=inventories/production)

Expected values come from the roles' defaults overlaid with the inventory's group_vars
(IRONTRACK_EXPECT_INVENTORY, default inventories/local; templated values are skipped), so
the suite follows the code and the inventory it checks; any other override goes in
IRONTRACK_EXPECT_<NAME>.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def role_defaults(role: str) -> dict[str, Any]:
    path = REPO / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(path.read_text()) or {}


def inventory_vars() -> dict[str, Any]:
    """The literal (untemplated) group_vars of the `irontrack` group of the inventory."""
    inventory = Path(os.environ.get("IRONTRACK_EXPECT_INVENTORY", REPO / "inventories" / "local"))
    group_vars = inventory / "group_vars"
    files = [group_vars / "irontrack.yml", *sorted((group_vars / "irontrack").glob("*.yml"))]
    merged: dict[str, Any] = {}
    for path in (f for f in files if f.is_file() and not f.name.startswith("vault")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return {k: v for k, v in merged.items() if not (isinstance(v, str) and "{{" in v)}


def expected(role: str, name: str) -> Any:
    """IRONTRACK_EXPECT_<NAME> (YAML-parsed), else the inventory's value, else the role default."""
    override = os.environ.get(f"IRONTRACK_EXPECT_{name.upper()}")
    if override is not None:
        return yaml.safe_load(override)
    inventory = inventory_vars()
    if name in inventory:
        return inventory[name]
    return role_defaults(role)[name]


def secret(name: str) -> str:
    """A secret from IRONTRACK_<NAME> or from the file the local inventory generated."""
    value = os.environ.get(f"IRONTRACK_{name.upper()}")
    if value:
        return value
    secrets_dir = os.environ.get("IRONTRACK_SECRETS_DIR", str(REPO / ".secrets" / "local"))
    path = Path(secrets_dir) / name
    if not path.exists():
        pytest.fail(f"secret {name} not found: set IRONTRACK_{name.upper()} or create {path}")
    return path.read_text().strip()


@pytest.fixture(scope="module")
def in_container(host) -> bool:
    return host.run("systemd-detect-virt --container").rc == 0
