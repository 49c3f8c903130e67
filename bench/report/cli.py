"""``python -m bench report RESULTS_DIR``: write report.md, summary.md and figures.json there."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from . import markdown
from .figures import collect


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write(directory: Path) -> dict[str, Path]:
    """Write every output of the run in ``directory``; return their paths."""
    figures = collect(directory)
    written: dict[str, Path] = {}
    written["json"] = directory / "figures.json"
    written["json"].write_text(
        json.dumps(_clean(figures), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    written["report"] = directory / "report.md"
    written["report"].write_text(markdown.render(figures), encoding="utf-8")
    written["summary"] = directory / "summary.md"
    written["summary"].write_text("\n".join(markdown.summary_table(figures)) + "\n", "utf-8")
    print(markdown.ratios_text(figures))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="results/<date>_<host> of bench/playbook.yml")
    args = parser.parse_args(argv)
    if not (args.results / "raw").is_dir():
        parser.error(f"{args.results}/raw: no such directory (run python -m bench host first)")
    for name, path in write(args.results).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
