"""The fleet's containers, shared by its tests: names, a shell inside one, its address."""

from __future__ import annotations

import os
import subprocess

FLEET = os.environ.get("IRONTRACK_FLEET", "irontrack-fleet")
HOSTS = ("proxy", "app1", "app2", "db", "cache", "backup")


def container(name: str) -> str:
    return f"{FLEET}-{name}"


def run(name: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """A shell command inside one of the fleet's containers."""
    result = subprocess.run(
        ["docker", "exec", container(name), "sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, (name, command, result.stdout, result.stderr)
    return result


def address(name: str) -> str:
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            container(name),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == 1, out
    return out[0]


def not_running() -> list[str]:
    """The fleet's containers that are not running."""
    down = []
    for name in HOSTS:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", container(name)],
            capture_output=True,
            text=True,
            check=False,
        )
        if state.stdout.strip() != "true":
            down.append(container(name))
    return down
