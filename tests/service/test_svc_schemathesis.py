"""Schemathesis against the running service: every check, every operation of /openapi.json.

The server has its own Valkey database (its login throttling counters, which Schemathesis'
random logins fill, never meet the other tests'). Examples per operation:
``IRONTRACK_SCHEMATHESIS_EXAMPLES`` (default 25); seed fixed, so a failure reproduces.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from harness import VENV_BIN, Server, Stack

EXAMPLES = os.environ.get("IRONTRACK_SCHEMATHESIS_EXAMPLES", "25")


@pytest.fixture(scope="module")
def api_server(stack: Stack) -> Iterator[Server]:
    env = stack.app_env(IRONTRACK_VALKEY_URL=stack.valkey.url.rsplit("/", 1)[0] + "/4")
    server = Server(env, stack.root, "schemathesis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_schemathesis_all_checks_pass(api_server: Server, stack: Stack) -> None:
    report = stack.root / "schemathesis-junit.xml"
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "run",
            f"{api_server.base_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            "20261127",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report-junit-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
