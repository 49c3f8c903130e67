#!/usr/bin/env python3
"""The two lock files, written by uv (`uv pip compile --generate-hashes`) and checked offline.

    scripts/lock.py compile            make lock: write both locks (existing pins are kept)
    scripts/lock.py compile --upgrade  make lock-upgrade: re-resolve every pin to the newest
    scripts/lock.py check              exit 1 when a pyproject.toml and its lock disagree

service/requirements.lock  the service's runtime dependencies (irontrack[uvicorn]) resolved
                           for the production host: Debian 12's CPython 3.11.2 on x86_64
                           (glibc 2.36, manylinux_2_36), wheels only. The app role builds the
                           wheelhouse from it and installs it with --require-hashes --no-index.
requirements-dev.lock      the tooling (.venv): the root pyproject's `dev` group plus the service
                           with its `test` and `uvicorn` extras, resolved for every Python >= 3.11
                           (markers kept) and constrained to the runtime lock's versions, so the
                           service tests run on the versions that ship.

Each lock carries `# input-sha256:` — a hash of the dependency declarations it was resolved
from (and, for the tooling lock, of the runtime lock). `check` recomputes it: any edit of a
dependency list, an extra, requires-python or the target without `make lock` fails lint.
Resolution prefers the pins already in the lock, so `make lock` after adding a dependency changes
only what the new dependency needs; `make lock-upgrade` moves everything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"
RUNTIME_LOCK = SERVICE / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

# The production host's interpreter and platform (Debian 12: python3 3.11.2, glibc 2.36).
TARGET_PYTHON = "3.11.2"
TARGET_PLATFORM = "x86_64-manylinux_2_36"
RUNTIME_EXTRAS = ("uvicorn",)
DEV_GROUP = "dev"
DEV_EXTRAS = ("test", "uvicorn")
DEV_PYTHON = "3.11"

INPUT_LINE = "# input-sha256: "
TARGET_LINE = "# target: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@dataclass(frozen=True)
class Lock:
    path: Path
    target: str  # what the lock is resolved for, recorded in its header

    def declared(self) -> dict[str, str]:
        """Header values: input-sha256 and target."""
        values = {}
        for line in self.path.read_text().splitlines():
            if line.startswith(INPUT_LINE):
                values["input"] = line.removeprefix(INPUT_LINE).strip()
            elif line.startswith(TARGET_LINE):
                values["target"] = line.removeprefix(TARGET_LINE).strip()
        return values


def _toml(path: Path) -> dict:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def service_declaration(source: Path, extras: tuple[str, ...]) -> dict:
    project = _toml(source / "pyproject.toml")["project"]
    optional = project.get("optional-dependencies", {})
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "extras": {name: optional.get(name, []) for name in extras},
    }


def runtime_input(source: Path = SERVICE) -> str:
    return _digest(
        {
            "service": service_declaration(source, RUNTIME_EXTRAS),
            "target": [TARGET_PYTHON, TARGET_PLATFORM],
        }
    )


def dev_input() -> str:
    groups = _toml(ROOT / "pyproject.toml").get("dependency-groups", {})
    return _digest(
        {
            "dev": groups.get(DEV_GROUP, []),
            "service": service_declaration(SERVICE, DEV_EXTRAS),
            "python": DEV_PYTHON,
            "runtime-lock": hashlib.sha256(RUNTIME_LOCK.read_bytes()).hexdigest(),
        }
    )


def runtime_target() -> str:
    return f"python {TARGET_PYTHON} {TARGET_PLATFORM} (wheels only)"


def dev_target() -> str:
    return f"python >= {DEV_PYTHON}, any platform (universal)"


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise SystemExit("lock: uv is not installed (it is in the dev group: make deps)")
    return found


def run_uv(args: list[str]) -> None:
    # uv reads the TLS-intercepting proxy's CA from the system store; the project's own
    # index settings only (no user pip/uv configuration leaks into the lock).
    env = {**os.environ, "UV_NATIVE_TLS": "1", "UV_NO_CONFIG": "1"}
    command = [uv(), "pip", "compile", "--quiet", "--no-config", *args]
    # An argv list, no shell; uv is the one from the tooling virtualenv.
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        raise SystemExit(f"lock: uv pip compile failed ({result.returncode}): {command}")


def stamp(path: Path, input_hash: str, target: str) -> None:
    """Put the input hash and the target under uv's header (before the first pin)."""
    lines = [
        line
        for line in path.read_text().splitlines()
        if not line.startswith((INPUT_LINE, TARGET_LINE))
    ]
    cut = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    lines[cut:cut] = [f"{TARGET_LINE}{target}", f"{INPUT_LINE}{input_hash}"]
    path.write_text("\n".join(lines) + "\n")


def _relative(path: Path) -> str:
    """Paths under the repository stay relative: uv writes them into the lock's comments."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def compile_runtime(
    source: Path = SERVICE, output: Path = RUNTIME_LOCK, extra: list[str] | None = None
) -> None:
    """Resolve the service's runtime lock (also used by tests on a copy of the service)."""
    extras = [arg for name in RUNTIME_EXTRAS for arg in ("--extra", name)]
    run_uv(
        [
            _relative(source / "pyproject.toml"),
            *extras,
            "--generate-hashes",
            "--python-version",
            TARGET_PYTHON,
            "--python-platform",
            TARGET_PLATFORM,
            "--only-binary",
            ":all:",
            "--custom-compile-command",
            "make lock",
            "--output-file",
            _relative(output),
            *(extra or []),
        ]
    )
    stamp(output, runtime_input(source), runtime_target())


def compile_dev(upgrade: bool) -> None:
    extras = [arg for name in DEV_EXTRAS for arg in ("--extra", name)]
    run_uv(
        [
            "--group",
            f"pyproject.toml:{DEV_GROUP}",
            "service/pyproject.toml",
            *extras,
            "--constraint",
            "service/requirements.lock",
            "--universal",
            "--python-version",
            DEV_PYTHON,
            "--generate-hashes",
            "--custom-compile-command",
            "make lock",
            "--output-file",
            "requirements-dev.lock",
            *(["--upgrade"] if upgrade else []),
        ]
    )
    stamp(DEV_LOCK, dev_input(), dev_target())


def pins(path: Path) -> dict[str, str]:
    """name -> version of every pin in a lock."""
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def check() -> list[str]:
    problems = []
    for lock, expected, target in (
        (Lock(RUNTIME_LOCK, runtime_target()), runtime_input(), runtime_target()),
        (Lock(DEV_LOCK, dev_target()), None, dev_target()),
    ):
        if not lock.path.is_file():
            problems.append(f"{lock.path.relative_to(ROOT)} is missing: run `make lock`")
            continue
        declared = lock.declared()
        want = expected if expected is not None else dev_input()
        if declared.get("input") != want:
            problems.append(
                f"{lock.path.relative_to(ROOT)} was not resolved from the current "
                "pyproject.toml dependencies: run `make lock`"
            )
        if declared.get("target") != target:
            problems.append(f"{lock.path.relative_to(ROOT)}: target is not `{target}`")
        text = lock.path.read_text()
        if "--hash=sha256:" not in text:
            problems.append(f"{lock.path.relative_to(ROOT)} has no hashes")
    if not problems:
        runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
        for name, version in sorted(runtime.items()):
            if dev.get(name) != version:
                problems.append(
                    f"requirements-dev.lock pins {name}=={dev.get(name)} but the runtime lock "
                    f"{version}: run `make lock`"
                )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    compile_parser = sub.add_parser("compile", help="write both locks")
    compile_parser.add_argument("--upgrade", action="store_true", help="re-resolve every pin")
    sub.add_parser("check", help="fail when a pyproject.toml and its lock disagree")
    args = parser.parse_args()
    if args.command == "compile":
        compile_runtime(extra=["--upgrade"] if args.upgrade else None)
        compile_dev(args.upgrade)
        for path in (RUNTIME_LOCK, DEV_LOCK):
            print(f"lock: {path.relative_to(ROOT)}: {len(pins(path))} pins")
        return 0
    problems = check()
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if not problems:
        print("lock: both locks match their pyproject.toml")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
