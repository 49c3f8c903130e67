#!/usr/bin/env python3
"""Write the benchmark report of a results directory (playbooks/bench.yml calls it).

Usage: tools/bench_report.py results/<YYYY-MM-DD>_<host>
Writes report.md, summary.md, figures.json and charts/{throughput,latency}.png there.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchreport.cli import main

if __name__ == "__main__":
    sys.exit(main())
