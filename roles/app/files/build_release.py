#!/usr/bin/env python3
"""Build the IronTrack release on the controller: the service wheel and a wheelhouse.

The release name is the package version plus a short hash of the wheel's RECORD (the
sha256 of every file in the wheel), so the same code always gives the same release and
any change gives a new one, whatever the build timestamps. The dependency wheelhouse is
cached under CACHE/deps/<key>, the key hashing the service's pyproject.toml, the Python
version and the machine, so a run with unchanged dependencies downloads nothing.

The controller's Python may differ from the host's in its micro version (3.11.7 here,
3.11.2 on Debian 12), and some requirements carry markers such as
`python_full_version < "3.11.3"`, so the wheelhouse is completed for the host's exact
version (--target-python): every requirement the host will evaluate as needed is checked
and any missing one is fetched.

Prints one JSON object: release, version, wheel, wheelhouse, python, machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - a controller without packaging: pip's copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]


def run_pip(python: str, *args: str) -> None:
    # An argv list (no shell); the interpreter is the operator's own app_controller_python.
    command = [python, *PIP, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"pip {args[0]} failed ({result.returncode})")


def wheel_digest(wheel: Path) -> str:
    """sha256 of the wheel's RECORD: a content hash independent of zip timestamps."""
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        return hashlib.sha256(archive.read(record)).hexdigest()


def interpreter_facts(python: str) -> tuple[str, str]:
    code = "import platform,sys;print('%d.%d' % sys.version_info[:2], platform.machine())"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    version, machine = out.stdout.split()
    return version, machine


def full_version(python: str) -> str:
    code = "import platform;print(platform.python_version())"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    return out.stdout.strip()


def deps_key(source: Path, extras: str, version: str, machine: str) -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "requirements.lock", "constraints.txt"):
        path = source / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    digest.update(f"{extras}|{version}|{machine}".encode())
    return digest.hexdigest()[:16]


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(metadata).decode())
    return [Requirement(line) for line in headers.get_all("Requires-Dist") or []]


def missing_requirements(wheelhouse: Path, root: Path, extras: str, target: str) -> list[str]:
    """Requirements the host (Python `target`) needs that the wheelhouse does not hold."""
    environment = default_environment()
    environment.update(
        python_full_version=target,
        python_version=".".join(target.split(".")[:2]),
        implementation_version=target,
    )
    wheels = {canonicalize_name(w.name.split("-")[0]): w for w in wheelhouse.glob("*.whl")}
    wanted: dict[str, set[str]] = {}
    queue: list[tuple[Path, set[str]]] = [(root, {e for e in extras.split(",") if e})]
    missing: list[str] = []
    while queue:
        wheel, wheel_extras = queue.pop()
        for requirement in wheel_requirements(wheel):
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({**environment, "extra": extra}) for extra in wheel_extras | {""}
            ):
                continue
            name = canonicalize_name(requirement.name)
            if name not in wheels:
                missing.append(str(requirement).split(";")[0])
                continue
            new = set(requirement.extras) - wanted.get(name, set())
            if name not in wanted or new:
                wanted[name] = wanted.get(name, set()) | new
                queue.append((wheels[name], wanted[name]))
    return missing


def build(
    source: Path, cache: Path, python: str, extras: str, target: str | None
) -> dict[str, str]:
    py_version, machine = interpreter_facts(python)
    target = target or full_version(python)
    with tempfile.TemporaryDirectory(prefix="irontrack-wheel-") as tmp:
        run_pip(python, "wheel", "--no-deps", "--wheel-dir", tmp, str(source))
        (built,) = Path(tmp).glob("*.whl")
        digest = wheel_digest(built)
        distribution, version = built.name.split("-")[:2]
        release = f"{version}-{digest[:12]}"
        service_dir = cache / "service" / release
        wheel = service_dir / built.name
        if not wheel.is_file():
            service_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, wheel)

    wheelhouse = cache / "deps" / deps_key(source, extras, target, machine)
    if not (wheelhouse / ".complete").is_file():
        partial = wheelhouse.with_name(wheelhouse.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        requirement = f"{wheel}[{extras}]" if extras else str(wheel)
        run_pip(python, "wheel", "--wheel-dir", str(partial), requirement)
        for _ in range(10):
            missing = missing_requirements(partial, wheel, extras, target)
            if not missing:
                break
            run_pip(python, "wheel", "--wheel-dir", str(partial), *missing)
        else:
            raise SystemExit(f"wheelhouse still misses {missing} for Python {target}")
        for own in partial.glob(f"{distribution}-*.whl"):
            own.unlink()  # the service wheel travels on its own, per release
        (partial / ".complete").write_text("")
        shutil.rmtree(wheelhouse, ignore_errors=True)
        partial.rename(wheelhouse)
        archive = wheelhouse.with_suffix(".tar")
        archive.unlink(missing_ok=True)

    # One archive travels to the host instead of dozens of files (much faster to copy).
    archive = wheelhouse.with_suffix(".tar")
    if not archive.is_file():
        partial_archive = archive.with_name(archive.name + ".partial")
        with tarfile.open(partial_archive, "w") as tar:
            for path in sorted(wheelhouse.iterdir()):
                tar.add(path, arcname=path.name)
        partial_archive.rename(archive)

    return {
        "release": release,
        "version": version,
        "wheel": str(wheel),
        "wheelhouse": str(wheelhouse),
        "wheelhouse_archive": str(archive),
        "python": py_version,
        "target_python": target,
        "machine": machine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--python", default="python3")
    parser.add_argument("--extras", default="")
    parser.add_argument("--target-python", help="the host's full Python version, e.g. 3.11.2")
    args = parser.parse_args()
    result = build(
        args.source.resolve(), args.cache.resolve(), args.python, args.extras, args.target_python
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
