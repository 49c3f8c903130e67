"""Tests of the bench report generator (bench/report) and the wrk helpers (bench/host).

The fixtures are real: wrk output and counters captured by bench/playbook.yml on a local host
(fixtures/bench-*), and the raw wrk logs of the reference report (fixtures/report-2026-02).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchfixtures import BENCH_RUNS


@pytest.fixture(params=BENCH_RUNS, ids=lambda p: p.name)
def bench_run(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A writable copy of a captured results directory."""
    target = tmp_path / request.param.name
    shutil.copytree(request.param, target)
    return target
