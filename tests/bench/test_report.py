"""report.md, summary.md and figures.json written from a captured run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchfixtures import ROOT

from bench.report.cli import write


def test_writes_report_and_json(bench_run: Path) -> None:
    written = write(bench_run)
    report = written["report"].read_text()
    for heading in (
        "## Ratios (one run)",
        "## Targets",
        "## Direct connection (loopback TCP): Granian vs Uvicorn",
        "## Proxy (HTTPS → unix socket) vs direct, Granian",
        "## Signup: its limit and every row",
        "## CPU during each scenario",
    ):
        assert heading in report
    for path in (bench_run / "raw").glob("*.txt"):
        assert f"(raw/{path.name})" in report
    # Strict JSON (no NaN), every scenario in it.
    figures = json.loads(written["json"].read_text(), parse_constant=_refuse)
    assert len(figures["scenarios"]) == len(list((bench_run / "raw").glob("*.json")))
    assert written["summary"].read_text().startswith("| Server | Scenario |")


def test_every_missed_target_gets_a_note_from_counters(bench_run: Path) -> None:
    report = write(bench_run)["report"].read_text()
    figures = json.loads((bench_run / "figures.json").read_text())
    for target in figures["targets"]:
        if target["met"] is False:
            line = next(x for x in report.splitlines() if x.startswith(f"- **{target['name']}**"))
            assert "host CPU busy" in line


def test_every_target_of_the_issue_is_judged(bench_run: Path) -> None:
    write(bench_run)
    figures = json.loads((bench_run / "figures.json").read_text())
    names = [target["name"] for target in figures["targets"]]
    assert names[:5] == [
        "/health ÷ /ping ≥ 0.5",
        "/me (one token) ÷ /ping ≥ 0.9",
        "/me (distinct tokens) ÷ /ping ≥ 0.5",
        "proxy ÷ direct for /ping ≥ 0.65",
        "proxy ÷ direct for /me ≥ 0.65",
    ]
    health = figures["targets"][0]
    assert health["value"] is not None
    assert health["met"] == (health["value"] >= 0.5)


def test_command_line(bench_run: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(bench_run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "/me ÷ /ping, Granian (direct)" in out.stdout
    assert (bench_run / "report.md").exists()


def test_command_line_refuses_a_directory_without_results(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "raw: no such directory" in out.stderr


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} in figures.json")
