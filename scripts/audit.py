#!/usr/bin/env python3
"""`make audit`: pip-audit against both locks; fail on any known vulnerability.

    scripts/audit.py            audit service/requirements.lock and requirements-dev.lock
    scripts/audit.py LOCK ...   audit these requirement files instead

pip-audit (PyPI's vulnerability data, `--disable-pip --no-deps`: the locks are complete and
hashed) checks every pin. Exceptions live in audit-ignore.toml, each with the advisory id, the
package, the reason, the review date and an expiry date; an entry without a reason or past its
expiry fails the audit, and so does one that no longer matches anything (stale).

A package pip-audit could not look up is not a pass: it is listed. Where PyPI's per-version
JSON API (/pypi/<name>/<version>/json, which pip-audit queries) is not served — as on the
IronTrack build machines, which reach PyPI through a mirror that serves the simple index and
the project JSON only — every package is skipped; the audit then says so loudly and exits 0,
unless IRONTRACK_AUDIT_STRICT=1 (CI where PyPI is reachable as is) makes that a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = [ROOT / "service" / "requirements.lock", ROOT / "requirements-dev.lock"]
IGNORE_FILE = ROOT / "audit-ignore.toml"
REQUIRED = ("id", "package", "reason", "reviewed", "expires")


def load_ignores(path: Path, today: datetime.date) -> tuple[dict[str, dict], list[str]]:
    """The reviewed exceptions by advisory id, and the problems with the file."""
    with path.open("rb") as handle:
        entries = tomllib.load(handle).get("ignore", [])
    ignores, problems = {}, []
    for number, entry in enumerate(entries, 1):
        missing = [key for key in REQUIRED if not str(entry.get(key, "")).strip()]
        if missing:
            problems.append(f"{path.name} entry {number}: missing {', '.join(missing)}")
            continue
        expires = entry["expires"]
        if not isinstance(expires, datetime.date):
            expires = datetime.date.fromisoformat(str(expires))
        if expires < today:
            problems.append(f"{path.name}: {entry['id']} expired on {expires}: review it again")
            continue
        ignores[entry["id"]] = entry
    return ignores, problems


def pip_audit(lock: Path, ignore_ids: list[str]) -> dict:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--progress-spinner",
        "off",
        "--vulnerability-service",
        "pypi",
        "--disable-pip",
        "--no-deps",
        "--format",
        "json",
        "--requirement",
        str(lock),
        *[arg for vuln in ignore_ids for arg in ("--ignore-vuln", vuln)],
    ]
    # An argv list, no shell: pip-audit from the tooling virtualenv.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"audit: pip-audit failed on {lock.name} ({result.returncode})") from None


def audit(
    locks: list[Path], ignores: dict[str, dict]
) -> tuple[list[str], list[str], set[str], int]:
    """(vulnerabilities found, packages not audited, ignore ids that matched, pins seen)."""
    found, skipped, matched, total = [], [], set(), 0
    for lock in locks:
        report = pip_audit(lock, list(ignores))
        for dependency in report.get("dependencies", []):
            total += 1
            if "skip_reason" in dependency:
                skipped.append(f"{lock.name}: {dependency['skip_reason']}")
                continue
            label = f"{dependency['name']}=={dependency.get('version')} ({lock.name})"
            for vuln in dependency.get("vulns", []):
                ids = {vuln["id"], *vuln.get("aliases", [])}
                hit = ids & set(ignores)
                if hit:
                    matched |= hit
                    continue
                fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
                found.append(f"{label}: {vuln['id']} (fixed in {fixed})")
    return found, skipped, matched, total


def main() -> int:
    locks = [Path(arg).resolve() for arg in sys.argv[1:]] or LOCKS
    ignores, problems = load_ignores(IGNORE_FILE, datetime.date.today())
    found, skipped, matched, total = audit(locks, ignores)
    stale = sorted(set(ignores) - matched)
    if stale and not skipped:
        problems.append(f"{IGNORE_FILE.name}: no longer needed, remove: {', '.join(stale)}")
    for line in found:
        print(f"audit: VULNERABLE {line}", file=sys.stderr)
    for line in problems:
        print(f"audit: {line}", file=sys.stderr)
    strict = os.environ.get("IRONTRACK_AUDIT_STRICT") == "1"
    if skipped:
        print(
            f"audit: NOT AUDITED: {len(skipped)} of {total} pins could not be looked up "
            f"(first: {skipped[0]}). PyPI's per-version vulnerability API is not reachable "
            "from this machine; the audit is only as good as what it could look up.",
            file=sys.stderr,
        )
    if found or problems or (skipped and strict):
        return 1
    print(
        f"audit: {total - len(skipped)} of {total} pins looked up, no known vulnerability "
        f"({len(matched)} reviewed exception(s) in {IGNORE_FILE.name})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
