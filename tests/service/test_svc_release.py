"""The release a process runs: read from its virtualenv's marker (or IRONTRACK_RELEASE) and
reported by GET /health, so an operator can tell which release answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Server, Stack
from irontrack.release import RELEASE_FILE, current_release


def test_release_is_read_from_the_virtualenv_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IRONTRACK_RELEASE", raising=False)
    assert current_release(str(tmp_path)) == "dev"
    (tmp_path / RELEASE_FILE).write_text("0.1.0-5d57b8863d0d\n")
    assert current_release(str(tmp_path)) == "0.1.0-5d57b8863d0d"
    monkeypatch.setenv("IRONTRACK_RELEASE", "0.2.0-override")
    assert current_release(str(tmp_path)) == "0.2.0-override"


def test_health_reports_the_release_of_the_answering_process(stack: Stack) -> None:
    server = Server(stack.app_env(IRONTRACK_RELEASE="0.9.9-0123456789ab"), stack.root, "release")
    try:
        server.start()
        with server.client() as http:
            answer = http.get("/health")
        assert answer.status_code == 200, answer.text
        assert answer.json()["release"] == "0.9.9-0123456789ab"
    finally:
        server.stop()
