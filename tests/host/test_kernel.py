"""The kernel role: sysctl file, live values, open-files limits.

On a host that owns its kernel (a real host, the VM of molecule/kernel) every kernel
parameter must read back live at its value and a login must get the open-files limit.
Inside a container only the network namespace's own keys can be set and the hard
open-files limit is the machine's: there the role writes the rest and says it could not
apply it, and these tests check only what the container can hold.
"""

import re

import pytest
from conftest import expected

SYSCTL_FILE = "/etc/sysctl.d/60-irontrack.conf"

# Every (role, variable) holding kernel parameters a role writes and applies. The live
# check covers all of them: a role that adds sysctls (e.g. hardening's security keys)
# is checked by naming its variable here.
SYSCTL_SOURCES = (
    ("kernel", "kernel_sysctls"),
    ("kernel", "kernel_sysctls_extra"),
)

# Keys a container's own network namespace holds (settable there); every other key
# belongs to the machine that runs the container.
NAMESPACED_KEYS = frozenset(
    {
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_fin_timeout",
    }
)


def _norm(value) -> str:
    return re.sub(r"\s+", " ", str(value)).strip()


def _wanted() -> dict:
    """The kernel role's file: its defaults merged with the operator's extras."""
    sysctls = dict(expected("kernel", "kernel_sysctls"))
    sysctls.update(expected("kernel", "kernel_sysctls_extra") or {})
    return sysctls


def _every_sysctl() -> dict:
    """Every kernel parameter any role writes (SYSCTL_SOURCES, later ones win)."""
    sysctls: dict = {}
    for role, name in SYSCTL_SOURCES:
        sysctls.update(expected(role, name) or {})
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
    sysctls = expected("kernel", "kernel_sysctls")
    assert sysctls["net.core.somaxconn"] == 2048
    assert sysctls["net.core.rmem_max"] == 2500000
    assert sysctls["net.core.wmem_max"] == 2500000
    assert sysctls["vm.overcommit_memory"] == 1


@pytest.mark.parametrize("key", sorted(NAMESPACED_KEYS))
def test_namespaced_keys_are_live(host, key):
    """Network-namespace keys can be set even in a container: they must read back tuned."""
    live = host.run(f"sysctl -n {key}")
    assert live.rc == 0, live.stderr
    assert _norm(live.stdout) == _norm(_every_sysctl()[key])


@pytest.mark.parametrize("key", sorted(_every_sysctl()))
def test_every_key_is_live_on_a_real_kernel(host, in_container, key):
    """On a host that owns its kernel, every key reads back live at its value."""
    if in_container and key not in NAMESPACED_KEYS:
        pytest.skip(f"{key} belongs to the machine running the container (reported not applied)")
    live = host.run(f"sysctl -n {key}")
    assert live.rc == 0, live.stderr
    assert _norm(live.stdout) == _norm(_every_sysctl()[key])


def test_login_nofile_limit(host):
    limit = expected("kernel", "kernel_nofile_limit")
    f = host.file("/etc/security/limits.d/60-irontrack.conf")
    assert f.mode == 0o644
    content = f.content_string.splitlines()
    lines = {tuple(line.split()) for line in content if not line.startswith("#")}
    for who in ("*", "root"):
        assert (who, "soft", "nofile", str(limit)) in lines
        assert (who, "hard", "nofile", str(limit)) in lines


@pytest.mark.parametrize("user", ["root", expected("base", "base_service_user")])
def test_login_gets_the_open_files_limit(host, in_container, user):
    """A login session (su, through pam_limits) gets the limit as soft and hard limit."""
    if in_container:
        pytest.skip("the container's hard open-files limit is the machine's (20000 here)")
    limit = int(expected("kernel", "kernel_nofile_limit"))
    out = host.run("su -s /bin/sh -c %s %s", "ulimit -Sn; ulimit -Hn", user)
    assert out.rc == 0, out.stderr
    assert [int(x) for x in out.stdout.split()] == [limit, limit]
