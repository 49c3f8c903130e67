#!/usr/bin/env python3
"""Print why a Molecule (or ansible-playbook) run failed, from its saved output.

CI shows the head and the tail of a long log; the task that failed sits in the middle. This
prints, at the end, every failed task with its play's and task's names and its message, and
every pytest failure line the run printed, so the reason is in the tail:

    scripts/failure-summary.py .molecule-test.log
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

FAILED_TASK = re.compile(
    r"^(fatal|failed): \[(?P<host>[^\]]+)\](?: \(item=.*?\))?: (?P<what>\w+)! =>\s*(?P<body>.*)$"
)
PYTEST_FAILURE = re.compile(r"((?:FAILED|ERROR) \S*tests/\S+(?: - .*)?|\d+ (?:failed|error)[^\"]*)")
KEEP = 8000  # characters of a message, stdout or stderr (a failed stage shows its pytest failures)


def tail(text: str, limit: int = KEEP) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def describe(body: str) -> list[str]:
    """The useful parts of a failed task's result: JSON on one line or YAML below it."""
    try:
        result = json.loads(body)
    except ValueError:
        try:
            import yaml

            result = yaml.safe_load(body)
        except Exception:  # any unreadable result is shown as text
            result = None
    if not isinstance(result, dict):
        return [tail(body)]
    lines = []
    for key in ("msg", "stderr", "stdout"):
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            lines.append(f"  {key}: {tail(value)}")
    return lines or [tail(body)]


def summarise(log: str) -> list[str]:
    out: list[str] = []
    play = task = ""
    seen: set[str] = set()
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("PLAY ["):
            play = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("TASK ["):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        match = FAILED_TASK.match(line)
        if match:
            body = match["body"]
            if not body:  # callback_result_format = yaml: the result is the indented block
                block = []
                while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                    block.append(lines[i])
                    i += 1
                body = "\n".join(block)
            ignored = any(ln.strip() == "...ignoring" for ln in lines[i : i + 2])
            if not ignored:  # ignore_errors: not why the run failed
                out.append(f"* {play} / {task} on {match['host']} ({match['what']}):")
                out.extend(describe(body))
            continue
        for failure in PYTEST_FAILURE.findall(line):
            failure = failure.rstrip('",')
            if failure not in seen:
                seen.add(failure)
                out.append(f"  pytest: {tail(failure, 400)}")
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    log = Path(sys.argv[1]).read_text(errors="replace")
    lines = summarise(log)
    print(f"\n==== why it failed ({sys.argv[1]}) ====")
    print("\n".join(lines) if lines else "no failed task or test found in the log; read it above")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
