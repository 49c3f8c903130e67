"""Paths of the real fixtures (imported by the tests; a unique module name, unlike conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the bench package

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BENCH_RUNS = sorted(p for p in FIXTURES.glob("bench-*") if p.is_dir())
REPORT_RUNS = sorted((FIXTURES / "report-2026-02").glob("*.txt"))
FILES = ROOT / "bench" / "host"
