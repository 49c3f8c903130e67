"""The role tests' shared helper (playbook_runner.py) is importable whatever pytest's
rootdir or import mode."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
