"""ansible-playbook as the role tests run it: this Python's, from the repository's root.

Imported by the test modules beside it (conftest.py puts this folder on sys.path).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ansible_playbook() -> str:
    """The ansible-playbook beside the Python running the tests (the repository's .venv),
    else the one on PATH."""
    beside = BIN / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.fail("ansible-playbook not found next to this Python (run make deps)")
    return found


def run_playbook(
    *args: str, home: Path, path: str = "/usr/bin:/bin", timeout: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook ARGS` from the repository's root in a clean environment: this
    Python's bin folder, then `path`, on PATH; the repository's ansible.cfg; no colours;
    HOME=`home` (a throwaway folder, so no ~/.ansible of the user); `env` added. Output
    captured as text, the exit code left to the caller; `timeout` (seconds) as subprocess.run's."""
    return subprocess.run(
        [ansible_playbook(), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": f"{BIN}:{path}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "HOME": str(home),
            **env,
        },
        timeout=timeout,
    )
