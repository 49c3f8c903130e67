"""The kernel role: sysctl file, live values, open-files limits."""

import re

import pytest
from conftest import expected

SYSCTL_FILE = "/etc/sysctl.d/60-irontrack.conf"


def _norm(value) -> str:
    return re.sub(r"\s+", " ", str(value)).strip()


def _wanted() -> dict:
    sysctls = dict(expected("kernel", "kernel_sysctls"))
    sysctls.update(expected("kernel", "kernel_sysctls_extra") or {})
    return sysctls


def test_sysctl_file_holds_every_key(host):
    f = host.file(SYSCTL_FILE)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    written = dict(
        (k.strip(), _norm(v))
        for k, v in (
            line.split("=", 1)
            for line in f.content_string.splitlines()
            if line.strip() and not line.startswith("#")
        )
    )
    assert written == {k: _norm(v) for k, v in _wanted().items()}


def test_report_values_are_the_defaults():
    sysctls = _wanted()
    assert sysctls["net.core.somaxconn"] == 2048
    assert sysctls["net.core.rmem_max"] == 2500000
    assert sysctls["net.core.wmem_max"] == 2500000
    assert sysctls["vm.overcommit_memory"] == 1


@pytest.mark.parametrize(
    "key",
    [
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_fin_timeout",
    ],
)
def test_namespaced_keys_are_live(host, key):
    """Network-namespace keys can be set even in a container: they must read back tuned."""
    live = host.run(f"sysctl -n {key}")
    assert live.rc == 0, live.stderr
    assert _norm(live.stdout) == _norm(_wanted()[key])


def test_global_keys_are_live_on_a_real_host(host, in_container):
    if in_container:
        pytest.skip("vm.*, fs.*, net.core.[rw]mem_max belong to the machine running the container")
    for key in ("vm.overcommit_memory", "net.core.rmem_max", "net.core.wmem_max", "fs.file-max"):
        assert _norm(host.run(f"sysctl -n {key}").stdout) == _norm(_wanted()[key]), key


def test_login_nofile_limit(host):
    limit = expected("kernel", "kernel_nofile_limit")
    f = host.file("/etc/security/limits.d/60-irontrack.conf")
    assert f.mode == 0o644
    content = f.content_string.splitlines()
    lines = {tuple(line.split()) for line in content if not line.startswith("#")}
    for who in ("*", "root"):
        assert (who, "soft", "nofile", str(limit)) in lines
        assert (who, "hard", "nofile", str(limit)) in lines
