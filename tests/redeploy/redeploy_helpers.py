"""What the redeploy tests share: playbook runs against the host under test, its live slot
and release, a service variant to deploy, and the client loops on /ping (started by the
`ping_loops` fixture of conftest.py, stopped and read back by `stop_loops`).

Imported by the test modules beside it and by conftest.py (which puts this folder on
sys.path).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOCKET = "/run/app/granian.sock"
PROXY_URL = "https://localhost/ping"
LOOP_SCRIPT = Path(__file__).with_name("ping_loop.py")


def live_state(host) -> dict[str, str]:
    """The live slot (from the socket link) and the release it runs."""
    link = host.file(SOCKET).linked_to
    slot = Path(link).stem.rsplit("-", 1)[-1]
    release = host.file(f"/opt/irontrack/slots/{slot}").linked_to
    return {"slot": slot, "release": release}


def playbook(host, name: str, *extra: str) -> subprocess.CompletedProcess:
    """Run playbooks/<name> against the host under test (IRONTRACK_DEPLOY_ARGS appended)."""
    inventory = os.environ.get("IRONTRACK_INVENTORY", str(REPO / "inventories" / "local"))
    # The local inventory has one host, `irontrack-local`, whose container is
    # $IRONTRACK_INSTANCE: no --limit there (the container name is not the inventory name).
    local = Path(inventory).resolve() == (REPO / "inventories" / "local").resolve()
    command = [
        "ansible-playbook",
        "-i",
        inventory,
        str(REPO / "playbooks" / name),
        *([] if local else ["--limit", host.backend.get_hostname()]),
        *shlex.split(os.environ.get("IRONTRACK_DEPLOY_ARGS", "")),
        *extra,
    ]
    # JSON results: a message is one line whatever the paths' lengths (the YAML format folds
    # long strings at a width, which moves with the checkout's path).
    env = {**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, env=env)


def output(result: subprocess.CompletedProcess) -> str:
    """stdout and stderr of a playbook run, every run of whitespace made one space."""
    return " ".join((result.stdout + result.stderr).split())


def deploy(host, source: Path | None, *extra: str) -> subprocess.CompletedProcess:
    """playbooks/deploy.yml, of `source` (a service tree) or of the repository's service."""
    sourced = ["-e", f"app_source_dir={source}"] if source is not None else []
    return playbook(host, "deploy.yml", *sourced, *extra)


def deployed(result: subprocess.CompletedProcess) -> bool:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return True


def service_variant(tmp_path: Path, broken: bool = False) -> Path:
    """The repository's service with one marker comment: same behaviour, a new release.
    `broken`: the ASGI app cannot be imported (the release can never start)."""
    variant = tmp_path / "service"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        REPO / "service",
        variant,
        ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc", ".pytest_cache", ".run"),
    )
    init = variant / "src" / "irontrack" / "__init__.py"
    init.write_text(init.read_text() + f"\n# redeploy test {uuid.uuid4().hex}\n")
    if broken:
        main = variant / "src" / "irontrack" / "main.py"
        main.write_text(main.read_text() + '\nraise RuntimeError("redeploy test: broken")\n')
    return variant


def loop_output(host, unit: str) -> dict:
    for _ in range(20):
        journal = host.run(f"journalctl --no-pager -o cat -u {unit}").stdout
        for line in journal.splitlines():
            if line.startswith("PING-LOOP "):
                return json.loads(line.removeprefix("PING-LOOP "))
        time.sleep(0.5)
    raise AssertionError(f"no summary from {unit}:\n{journal}")


def start_loop(host, target: str, *options: str, group: str = "nogroup") -> str:
    unit = f"irontrack-ping-loop-{uuid.uuid4().hex[:8]}"
    script = shlex.quote(LOOP_SCRIPT.read_text())
    start = host.run(
        f"systemd-run --quiet --collect --unit {unit} -p User=nobody -p Group=nogroup "
        f"-p SupplementaryGroups={group} /usr/bin/python3 -c {script} {target} " + " ".join(options)
    )
    assert start.rc == 0, start.stderr
    return unit


def stop_loops(host, ping_loops: dict[str, str]) -> dict[str, dict]:
    """Stop every client loop and return its summary, by client name."""
    summaries = {}
    for name, unit in ping_loops.items():
        host.run_expect([0], f"systemctl stop {unit}")
        summaries[name] = loop_output(host, unit)
    return summaries
