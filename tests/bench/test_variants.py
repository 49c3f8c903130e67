"""bench/variants.py: every variant applies to what the roles render, and changes only its part.

The fixtures are the local host's live files as provisioned (2026-11-28): the proxy's
configuration (nginx flavor, rate limits on) and a Granian slot unit (``systemctl cat``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from bench import variants

FIXTURES = Path(__file__).parent / "fixtures"
CONF = (FIXTURES / "nginx-as-provisioned.conf").read_text()
UNIT = (FIXTURES / "irontrack-slot.service").read_text()
PROXY = {v.name: v for v in variants.VARIANTS if v.proxy is not None}
GRANIAN = {v.name: v for v in variants.VARIANTS if v.granian is not None}


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return [line for line in diff if line[:2] in ("- ", "+ ")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "access_log off",
            [
                "-     access_log /var/log/nginx/access.log irontrack buffer=64k flush=1s;",
                "+     access_log off;",
            ],
        ),
        ("proxy_buffering off", ["+         proxy_buffering off;"]),
        ("worker_processes 1", ["- worker_processes auto;", "+ worker_processes 1;"]),
        (
            "no upstream keepalive",
            [
                "-         keepalive 64;",
                "-         keepalive_requests 10000;",
                "-         keepalive_timeout 60s;",
            ],
        ),
        ("ssl_buffer_size 4k", ["+     ssl_buffer_size 4k;"]),
    ],
)
def test_proxy_variant_changes_only_its_directive(name: str, expected: list[str]) -> None:
    assert changed_lines(CONF, PROXY[name].proxy(CONF)) == expected


def test_every_proxy_variant_is_tested() -> None:
    assert set(PROXY) == {
        "access_log off",
        "proxy_buffering off",
        "worker_processes 1",
        "no upstream keepalive",
        "ssl_buffer_size 4k",
    }


def test_a_variant_that_does_not_apply_is_refused() -> None:
    with pytest.raises(SystemExit, match="does not apply"):
        PROXY["worker_processes 1"].proxy("events {}\n")


@pytest.mark.parametrize("name", sorted(GRANIAN))
def test_granian_variant_rewrites_the_whole_exec_start(name: str) -> None:
    before, after = GRANIAN[name].granian
    exec_start = variants.granian_exec_start("irontrack@blue.service", UNIT, (before, after))
    assert exec_start.startswith("ExecStart=/opt/irontrack/slots/%i/bin/granian irontrack.main:app")
    assert exec_start.rstrip().endswith("--uds-permissions 0660")  # every continuation line
    assert after in exec_start
    assert "ExecStartPre" not in exec_start
    if before not in after:
        assert before not in exec_start


def test_granian_flag_missing_is_refused() -> None:
    with pytest.raises(SystemExit, match="no '--runtime-threads 9'"):
        variants.granian_exec_start("u", UNIT, ("--runtime-threads 9", "--runtime-threads 1"))
