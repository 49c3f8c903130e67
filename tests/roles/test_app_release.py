"""Releases are reproducible, locked and checked (no host needed).

* two builds of one commit (each with its own cache, the second without pip's cache) give the
  same release id, the same service wheel and byte-for-byte the same wheelhouse, every wheel
  one of the lock's hashes;
* `scripts/lock.py check` notices a dependency edited without `make lock`;
* the interpreter that runs these tests (and the service tests: the same .venv) is the one
  the runtime lock targets, Debian 12's own python3;
* audit-ignore.toml entries need a reason and expire.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "roles" / "app" / "files" / "build_release.py"
sys.path.insert(0, str(ROOT / "scripts"))

import audit  # noqa: E402
import lock  # noqa: E402


def build(cache: Path, *extra: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(BUILD), "--source", str(ROOT / "service"), "--cache", str(cache),
         "--extras", "uvicorn", *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def wheel_hashes(wheelhouse: Path) -> dict[str, str]:
    return {
        wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest()
        for wheel in sorted(wheelhouse.glob("*.whl"))
    }


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build(tmp_path_factory.mktemp("one"))


def test_two_builds_of_one_commit_are_the_same_release_byte_for_byte(
    first: dict, tmp_path: Path
) -> None:
    second = build(tmp_path / "two", "--no-pip-cache")  # downloaded again from PyPI

    assert first["release"] == second["release"]
    assert first["wheel_sha256"] == second["wheel_sha256"]
    one, two = wheel_hashes(Path(first["wheelhouse"])), wheel_hashes(Path(second["wheelhouse"]))
    assert one == two
    assert set(one) == {p.name for p in Path(second["wheelhouse"]).glob("*.whl")}
    lock_text = (ROOT / "service" / "requirements.lock").read_text()
    assert len(one) == len(lock.pins(ROOT / "service" / "requirements.lock"))
    for name, digest in one.items():
        assert f"--hash=sha256:{digest}" in lock_text, name
    for name in ("release.json", "requirements.txt", "requirements.lock", "sbom.cdx.json"):
        assert (Path(first["metadata"]) / name).read_bytes() == (
            Path(second["metadata"]) / name
        ).read_bytes(), name

    info = json.loads((Path(first["metadata"]) / "release.json").read_text())
    assert info["release"] == first["release"]
    assert info["lock_sha256"] == hashlib.sha256(lock_text.encode()).hexdigest()
    assert info["target_python"] == lock.TARGET_PYTHON
    assert re.fullmatch(r"[0-9a-f]{40}", info["commit"])
    assert (
        info["packages"]["granian"] == lock.pins(ROOT / "service" / "requirements.lock")["granian"]
    )
    sbom = json.loads((Path(first["metadata"]) / "sbom.cdx.json").read_text())
    assert {c["name"] for c in sbom["components"]} >= {"granian", "fastapi", "cryptography"}


def test_a_changed_lock_is_a_new_release(first: dict, tmp_path: Path) -> None:
    source = tmp_path / "service"
    shutil.copytree(
        ROOT / "service", source, ignore=shutil.ignore_patterns(".venv", "__pycache__", ".run")
    )
    text = (source / "requirements.lock").read_text()
    (source / "requirements.lock").write_text(text.replace("# via", "#  via", 1))
    cache = Path(first["wheelhouse"]).parents[1]
    changed = subprocess.run(
        [sys.executable, str(BUILD), "--source", str(source), "--cache", str(cache),
         "--extras", "uvicorn"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(changed.stdout)
    assert result["release"] != first["release"]
    assert result["wheel_sha256"] == first["wheel_sha256"]  # same code, another lock


def test_lock_check_notices_a_dependency_edited_without_make_lock(tmp_path: Path) -> None:
    assert lock.check() == []
    source = tmp_path / "service"
    source.mkdir()
    pyproject = (ROOT / "service" / "pyproject.toml").read_text()
    (source / "pyproject.toml").write_text(pyproject.replace("granian>=2.2,<3", "granian>=2.3,<3"))
    assert "granian>=2.2,<3" in pyproject
    declared = lock.Lock(lock.RUNTIME_LOCK, lock.runtime_target()).declared()
    assert declared["input"] == lock.runtime_input(ROOT / "service")
    assert lock.runtime_input(source) != declared["input"]


def test_the_tests_run_on_the_interpreter_the_runtime_lock_targets() -> None:
    """The .venv (make deps) runs the service tests on Debian 12's own python3, the host's."""
    version = ".".join(map(str, sys.version_info[:3]))
    assert version == lock.TARGET_PYTHON, (
        f"tests run on Python {version}, the host runs {lock.TARGET_PYTHON}: make deps"
    )
    base = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    assert base.parent == Path("/usr/bin"), f"{base} is not Debian's python3 (make deps)"


def test_audit_exceptions_need_a_reason_and_expire(tmp_path: Path) -> None:
    today = datetime.date(2026, 11, 27)
    ignores, problems = audit.load_ignores(audit.IGNORE_FILE, today)
    assert problems == []
    path = tmp_path / "ignore.toml"
    path.write_text(
        '[[ignore]]\nid = "GHSA-1"\npackage = "a"\nreason = "not used"\n'
        "reviewed = 2026-11-01\nexpires = 2026-12-01\n"
        '[[ignore]]\nid = "GHSA-2"\npackage = "b"\nreason = ""\n'
        "reviewed = 2026-11-01\nexpires = 2026-12-01\n"
        '[[ignore]]\nid = "GHSA-3"\npackage = "c"\nreason = "old"\n'
        "reviewed = 2025-01-01\nexpires = 2025-02-01\n"
    )
    ignores, problems = audit.load_ignores(path, today)
    assert list(ignores) == ["GHSA-1"]
    assert len(problems) == 2
    assert "missing reason" in problems[0]
    assert "expired" in problems[1]


@pytest.mark.parametrize("lock_path", [lock.RUNTIME_LOCK, lock.DEV_LOCK], ids=lambda p: p.name)
def test_every_pin_is_hashed(lock_path: Path) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock_path.read_text())
    pinned = [b for b in blocks if lock.PIN.match(b)]
    assert pinned
    for block in pinned:
        assert "--hash=sha256:" in block, block.splitlines()[0]
