"""The base role: packages, service account, directories, time sync."""

from conftest import expected


def test_systemd_is_running(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-legend").stdout


def test_base_packages_installed(host):
    for name in expected("base", "base_packages"):
        assert host.package(name).is_installed, name


def test_service_account_is_unprivileged(host):
    user = host.user(expected("base", "base_service_user"))
    assert user.exists
    assert user.group == expected("base", "base_service_group")
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000, "service account must be a system account"
    assert user.password in ("!", "*", "!*") or user.password.startswith("!")


def test_platform_directories(host):
    group = expected("base", "base_service_group")
    config = host.file(expected("base", "base_config_dir"))
    assert config.is_directory
    assert (config.user, config.group, config.mode) == ("root", group, 0o750)
    state = host.file(expected("base", "base_state_dir"))
    owner = expected("base", "base_service_user")
    assert (state.user, state.group, state.mode) == (owner, group, 0o750)
    install = host.file(expected("base", "base_install_dir"))
    assert (install.user, install.mode) == ("root", 0o755)


def test_time_sync_configured(host, in_container):
    conf = host.file("/etc/systemd/timesyncd.conf.d/irontrack.conf")
    assert conf.mode == 0o644
    for server in expected("base", "base_fallback_ntp_servers"):
        assert server in conf.content_string
    service = host.service("systemd-timesyncd")
    assert service.is_enabled
    if not in_container:
        assert service.is_running


def test_timezone(host):
    zone = expected("base", "base_timezone")
    assert host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{zone}"
