#!/usr/bin/env python3
"""Build the IronTrack release on the controller: the service wheel and a locked wheelhouse.

The dependency wheelhouse is downloaded from the service's lock (SOURCE/requirements.lock,
written by `make lock` for the production host's Python and platform) with
`pip download --require-hashes --no-deps --only-binary :all:` for that target, whatever the
controller's own Python: every wheel is checked against the lock's sha256, so two builds of one
lock are the same files byte for byte. It is cached under CACHE/deps/<sha256 of the lock>.

The service wheel is built by the controller's (locked) hatchling, without an isolated build
environment. The release name is the package version plus a short hash of the wheel's RECORD
(the sha256 of every file in it) and of the lock: the same code on the same lock is the same
release; any change of either is a new one.

Next to the wheel the release records what it is: release.json (release, commit, lock sha256,
target, wheel sha256, wheelhouse manifest), requirements.txt (the lock plus the service wheel
with its hash: what the host installs with --require-hashes --no-index), the lock itself and a
CycloneDX SBOM (cyclonedx-py, reproducible output).

Prints one JSON object: release, version, wheel, wheelhouse, wheelhouse_archive, metadata,
target_python, target_platform, machine.
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
import tarfile
import tempfile
import zipfile
from pathlib import Path

PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
LOCK_NAME = "requirements.lock"
TARGET = re.compile(r"^# target: python (\d+\.\d+\.\d+) (\w+)-manylinux_(\d+)_(\d+) ")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    # An argv list (no shell); the interpreter is the operator's own app_controller_python.
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"build_release: {' '.join(command[:4])} … failed ({result.returncode})")
    return result.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_digest(wheel: Path) -> str:
    """sha256 of the wheel's RECORD: a content hash independent of zip timestamps."""
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        return hashlib.sha256(archive.read(record)).hexdigest()


def lock_facts(lock: Path) -> dict:
    """Target (python, machine, glibc), pins and their hashes, from the lock."""
    target = None
    pins: dict[str, str] = {}
    hashes: set[str] = set()
    for line in lock.read_text().splitlines():
        match = TARGET.match(line)
        if match:
            target = match.groups()
        pin = PIN.match(line)
        if pin:
            pins[pin.group(1)] = pin.group(2)
        hashes.update(HASH.findall(line))
    if target is None:
        raise SystemExit(f"build_release: {lock} names no `# target:` (write it with make lock)")
    python, machine, glibc_major, glibc_minor = target
    return {
        "python": python,
        "machine": machine,
        "glibc": (int(glibc_major), int(glibc_minor)),
        "pins": pins,
        "hashes": hashes,
    }


def platform_args(machine: str, glibc: tuple[int, int]) -> list[str]:
    """pip takes --platform literally: list every manylinux tag the host's glibc accepts."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    tags += [f"manylinux{legacy}_{machine}" for legacy in ("2014", "2010", "1")]
    return [arg for tag in tags for arg in ("--platform", tag)]


def download_wheelhouse(python: str, lock: Path, facts: dict, dest: Path, cache: bool) -> None:
    """Exactly the lock's wheels for the target, each checked against its sha256."""
    version = ".".join(facts["python"].split(".")[:2])
    abi = "cp" + version.replace(".", "")
    command = [
        python,
        *PIP,
        "--isolated",  # no user/site pip configuration: only PyPI and the lock decide
        "download",
        "--require-hashes",
        "--no-deps",
        "--only-binary",
        ":all:",
        *platform_args(facts["machine"], facts["glibc"]),
        "--python-version",
        version,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--dest",
        str(dest),
        "--requirement",
        str(lock),
    ]
    if not cache:
        command.insert(command.index("download") + 1, "--no-cache-dir")
    run(command)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(facts["pins"]):
        raise SystemExit(
            f"build_release: {len(wheels)} wheels for {len(facts['pins'])} pins in {lock}"
        )
    for wheel in wheels:
        if sha256(wheel) not in facts["hashes"]:
            raise SystemExit(f"build_release: {wheel.name} is not a file of {lock}")


def manifest(wheelhouse: Path) -> str:
    """`sha256  name` of every wheel, sorted: the identity of a wheelhouse."""
    return "".join(f"{sha256(w)}  {w.name}\n" for w in sorted(wheelhouse.glob("*.whl")))


def build_wheelhouse(python: str, lock: Path, facts: dict, cache: Path, use_pip_cache: bool):
    wheelhouse = cache / "deps" / sha256(lock)[:16]
    if not (wheelhouse / ".complete").is_file():
        partial = wheelhouse.with_name(wheelhouse.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        download_wheelhouse(python, lock, facts, partial, use_pip_cache)
        (partial / "SHA256SUMS").write_text(manifest(partial))
        (partial / ".complete").write_text("")
        shutil.rmtree(wheelhouse, ignore_errors=True)
        partial.rename(wheelhouse)
        wheelhouse.with_suffix(".tar").unlink(missing_ok=True)
    # One archive travels to the host instead of dozens of files (much faster to copy).
    archive = wheelhouse.with_suffix(".tar")
    if not archive.is_file():
        partial_archive = archive.with_name(archive.name + ".partial")
        with tarfile.open(partial_archive, "w") as tar:
            for path in sorted(wheelhouse.iterdir()):
                tar.add(path, arcname=path.name)
        partial_archive.rename(archive)
    return wheelhouse, archive


def build_wheel(python: str, source: Path, dest: Path) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # hatchling: fixed zip times
    run(
        [python, *PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(source)],
        env=env,
    )
    (built,) = dest.glob("*.whl")
    return built


def commit_of(source: Path) -> dict[str, object]:
    """The git commit of the source tree, and whether it differs from that commit."""
    try:
        top = run(["git", "-C", str(source), "rev-parse", "--show-toplevel"]).strip()
        head = run(["git", "-C", top, "rev-parse", "HEAD"]).strip()
        dirty = run(["git", "-C", top, "status", "--porcelain", "--", str(source)]).strip()
    except (SystemExit, OSError):
        return {"commit": "unknown", "dirty": True}
    return {"commit": head, "dirty": bool(dirty)}


def sbom(python: str, requirements: Path, out: Path) -> None:
    """CycloneDX JSON of the release's requirements (cyclonedx-py, no timestamp or serial)."""
    run(
        [
            python,
            "-m",
            "cyclonedx_py",
            "requirements",
            "--output-reproducible",
            "--of",
            "JSON",
            "-o",
            str(out),
            str(requirements),
        ]
    )


def build(source: Path, cache: Path, python: str, extras: str, pip_cache: bool = True) -> dict:
    lock = source / LOCK_NAME
    if not lock.is_file():
        raise SystemExit(f"build_release: {lock} is missing (make lock)")
    facts = lock_facts(lock)
    lock_sha = sha256(lock)
    wheelhouse, archive = build_wheelhouse(python, lock, facts, cache, pip_cache)

    with tempfile.TemporaryDirectory(prefix="irontrack-wheel-") as tmp:
        built = build_wheel(python, source, Path(tmp))
        distribution, version = built.name.split("-")[:2]
        release_hash = hashlib.sha256(f"{wheel_digest(built)}\n{lock_sha}".encode()).hexdigest()
        release = f"{version}-{release_hash[:12]}"
        release_dir = cache / "service" / release
        wheel = release_dir / built.name
        if not (release_dir / ".complete").is_file():
            shutil.rmtree(release_dir, ignore_errors=True)
            release_dir.mkdir(parents=True)
            shutil.copy2(built, wheel)

    wheel_sha = sha256(wheel)
    spec = f"{distribution}[{extras}]" if extras else distribution
    if not (release_dir / ".complete").is_file():
        shutil.copy2(lock, release_dir / LOCK_NAME)
        # What the host installs (--require-hashes --no-index): the lock and the service wheel.
        # pip expands ${IRONTRACK_WHEEL_DIR}: the directory the wheel lands in on the host.
        (release_dir / "requirements.txt").write_text(
            lock.read_text()
            + f"{spec} @ file://${{IRONTRACK_WHEEL_DIR}}/{wheel.name} --hash=sha256:{wheel_sha}\n"
        )
        sbom(python, release_dir / LOCK_NAME, release_dir / "sbom.cdx.json")
        info = {
            "release": release,
            "version": version,
            **commit_of(source),
            "lock": LOCK_NAME,
            "lock_sha256": lock_sha,
            "target_python": facts["python"],
            "target_platform": "{}-manylinux_{}_{}".format(facts["machine"], *facts["glibc"]),
            "wheel": wheel.name,
            "wheel_sha256": wheel_sha,
            "extras": [e for e in extras.split(",") if e],
            "wheelhouse": wheelhouse.name,
            "wheelhouse_sha256": hashlib.sha256(manifest(wheelhouse).encode()).hexdigest(),
            "packages": dict(sorted(facts["pins"].items())),
        }
        (release_dir / "release.json").write_text(json.dumps(info, indent=2) + "\n")
        (release_dir / ".complete").write_text("")

    return {
        "release": release,
        "version": version,
        "wheel": str(wheel),
        "wheel_sha256": wheel_sha,
        "metadata": str(release_dir),
        "wheelhouse": str(wheelhouse),
        "wheelhouse_archive": str(archive),
        "target_python": facts["python"],
        "target_platform": f"manylinux_{facts['glibc'][0]}_{facts['glibc'][1]}",
        "machine": facts["machine"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--extras", default="")
    parser.add_argument(
        "--wheelhouse-only",
        action="store_true",
        help="only download the wheelhouse of the lock (prints its directory and manifest)",
    )
    parser.add_argument("--no-pip-cache", action="store_true", help="download without pip's cache")
    args = parser.parse_args()
    source, cache = args.source.resolve(), args.cache.resolve()
    if args.wheelhouse_only:
        lock = source / LOCK_NAME
        wheelhouse, _ = build_wheelhouse(
            args.python, lock, lock_facts(lock), cache, not args.no_pip_cache
        )
        print(json.dumps({"wheelhouse": str(wheelhouse), "manifest": manifest(wheelhouse)}))
        return
    print(json.dumps(build(source, cache, args.python, args.extras, not args.no_pip_cache)))


if __name__ == "__main__":
    main()
