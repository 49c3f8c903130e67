"""`deploy.yml -e release=<id>` goes back to an earlier release without dropping a request.

Deploy release A (the repository's service, its lock), then release B (the same code, but a
lock in which one dependency is one version older), then roll back to A by its id while
clients loop on /ping through the socket and the proxy: no request fails, A's slot serves
again, GET /health names A, and A's recorded versions (pip freeze in its release directory)
are what runs — B's different version is gone. A rollback to an id the host never ran fails
before anything changes.

Needs a provisioned host (make up), PyPI for B's lock, and a few minutes:
    IRONTRACK_INVENTORY=inventories/local pytest tests/redeploy --hosts=docker://irontrack-local
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from redeploy_helpers import (
    REPO,
    SOCKET,
    deploy,
    deployed,
    live_state,
    output,
    service_variant,
    stop_loops,
)

sys.path.insert(0, str(REPO / "scripts"))
import lock

MOVED = "idna"  # a leaf dependency (of email-validator and anyio) that B locks one version older


def relocked_variant(tmp_path: Path) -> Path:
    """The service with a lock whose MOVED pin is older: another release, other versions."""
    source = service_variant(tmp_path)
    current = lock.pins(source / "requirements.lock")[MOVED]
    constraint = tmp_path / "constraint.txt"
    constraint.write_text(f"{MOVED}<{current}\n")
    lock.compile_runtime(source, source / "requirements.lock", ["--constraint", str(constraint)])
    assert lock.pins(source / "requirements.lock")[MOVED] != current
    return source


def health(host) -> dict:
    out = host.check_output(f"curl -sf --max-time 5 --unix-socket {SOCKET} http://localhost/health")
    return json.loads(out)


def freeze(host, release_dir: str) -> dict[str, str]:
    lines = host.file(f"{release_dir}/pip-freeze.txt").content_string.splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_rollback_to_an_earlier_release_drops_no_request(host, ping_loops, tmp_path):
    release_a = service_variant(tmp_path / "a")
    release_b = relocked_variant(tmp_path / "b")

    assert deployed(deploy(host, release_a))
    a = live_state(host)
    a_id = Path(a["release"]).name
    a_versions = freeze(host, a["release"])
    assert health(host)["release"] == a_id
    recorded = json.loads(host.file(f"{a['release']}/release.json").content_string)
    assert recorded["release"] == a_id
    assert recorded["packages"][MOVED] == a_versions[MOVED]

    assert deployed(deploy(host, release_b))
    b = live_state(host)
    b_versions = freeze(host, b["release"])
    assert b["release"] != a["release"]
    assert b_versions[MOVED] != a_versions[MOVED], (a_versions, b_versions)
    assert health(host)["release"] == Path(b["release"]).name

    assert deployed(deploy(host, None, "-e", f"release={a_id}"))
    back = live_state(host)
    summaries = stop_loops(host, ping_loops)
    print(f"A {a_id} -> B {Path(b['release']).name} -> A; clients: {summaries}")

    assert back["release"] == a["release"]
    assert back["slot"] != b["slot"]
    assert health(host)["release"] == a_id
    assert host.file("/opt/irontrack/current").linked_to == a["release"]
    running = host.check_output(
        f"{a['release']}/bin/python -c 'import idna; print(idna.__version__)'"
    )
    assert running == a_versions[MOVED]
    assert freeze(host, back["release"]) == a_versions
    for name, summary in summaries.items():
        assert summary["failures"] == 0, (name, summary)


def test_rollback_to_an_unknown_release_changes_nothing(host):
    before = live_state(host)
    result = deploy(host, None, "-e", "release=0.0.0-000000000000")
    assert result.returncode != 0
    said = output(result)
    assert "is not recorded on" in said, said[-3000:]
    assert live_state(host) == before
