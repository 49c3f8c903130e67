# shellcheck shell=bash
# Sourced by host-image.sh and vm-image.sh: a Debian 12 root filesystem by debootstrap
# (minbase) with this machine's extra CA certificates handed in (e.g. a TLS-intercepting
# proxy) and the mirror's bookworm, bookworm-updates and bookworm-security suites as its apt
# sources. Reads $mirror and $ca_dir.
rootfs_debootstrap() { # $1: root directory, $2: packages to include (comma-separated), $3: log file
    debootstrap --variant=minbase --include="$2" bookworm "$1" "$mirror" >"$3" 2>&1 || {
        tail -n 30 "$3" >&2
        return 1
    }
    if [ -d "$ca_dir" ] && [ -n "$(ls -A "$ca_dir" 2>/dev/null)" ]; then
        cp -a "$ca_dir/." "$1/usr/local/share/ca-certificates/"
        chroot "$1" update-ca-certificates >/dev/null
    fi
    cat >"$1/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
}
