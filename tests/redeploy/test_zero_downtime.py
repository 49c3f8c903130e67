"""A redeploy of a new service version keeps serving: no failed request during it.

A client on the host loops on GET /ping through the app's socket (a new connection per
request, as the proxy's group), and a second one through the proxy when it answers, while
playbooks/deploy.yml installs a new version of the service and switches slots, then while
it deploys the repository's version back. Both switches (blue -> green -> blue) must pass
without one failed request.

Needs a provisioned host (make up) and takes a few minutes:
    IRONTRACK_INVENTORY=inventories/local pytest tests/redeploy --hosts=docker://irontrack-local
Extra arguments for ansible-playbook: IRONTRACK_DEPLOY_ARGS (e.g. "-e app_wait_for_health=false").
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

import pytest

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


@pytest.fixture
def ping_loops(host):
    """Client loops in transient units: on the socket (as nobody + the socket's group) and,
    when the proxy answers, through it (HTTPS, under its rate limit)."""
    if not host.file(SOCKET).is_symlink:
        pytest.skip(f"{SOCKET} is not there: provision the host first")
    group = host.check_output(f"stat -L -c %G {SOCKET}")
    loops = {"socket": start_loop(host, SOCKET, group=group)}
    if host.run(f"curl -sf --max-time 5 {PROXY_URL}").rc == 0:
        loops["proxy"] = start_loop(host, PROXY_URL, "--interval", "0.1")
    time.sleep(2)
    yield loops
    for unit in loops.values():
        host.run(f"systemctl stop {unit}")


def stop_loops(host, ping_loops: dict[str, str]) -> dict[str, dict]:
    """Stop every client loop and return its summary, by client name."""
    summaries = {}
    for name, unit in ping_loops.items():
        host.run_expect([0], f"systemctl stop {unit}")
        summaries[name] = loop_output(host, unit)
    return summaries


def test_redeploy_drops_no_request(host, ping_loops, tmp_path):
    before = live_state(host)

    assert deployed(deploy(host, service_variant(tmp_path)))
    middle = live_state(host)
    assert deployed(deploy(host, None))
    after = live_state(host)

    summaries = stop_loops(host, ping_loops)
    print(f"slots {before['slot']} -> {middle['slot']} -> {after['slot']}; clients: {summaries}")

    assert middle["slot"] != before["slot"], "the first deploy did not switch slots"
    assert middle["release"] != before["release"], "the first deploy did not change release"
    assert after["slot"] != middle["slot"], "the second deploy did not switch slots"
    assert host.service(f"irontrack@{middle['slot']}").is_running is False
    assert summaries["socket"]["requests"] > 100, summaries
    for name, summary in summaries.items():
        assert summary["failures"] == 0, (name, summary)


def test_failed_deploy_keeps_the_old_release_serving(host, ping_loops, tmp_path):
    before = live_state(host)

    result = deploy(host, service_variant(tmp_path, broken=True))
    after = live_state(host)

    summaries = stop_loops(host, ping_loops)
    print(f"failed deploy; slot {before['slot']} kept; clients: {summaries}")

    assert result.returncode != 0, "a release that cannot start must fail the deploy"
    # ansible-core writes a failed task's message to stdout or stderr depending on the
    # callback settings (Molecule's environment sends it to stderr): look in both.
    said = output(result)
    assert "did not start in slot" in said, said[-3000:]
    assert after == before
    idle = "green" if before["slot"] == "blue" else "blue"
    assert not host.service(f"irontrack@{idle}").is_running
    assert not host.service(f"irontrack@{idle}").is_enabled
    assert host.service(f"irontrack@{before['slot']}").is_running
    assert host.file("/opt/irontrack/current").linked_to == before["release"]
    for name, summary in summaries.items():
        assert summary["failures"] == 0, (name, summary)
