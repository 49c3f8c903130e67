#!/usr/bin/env bash
# Build (once) the Debian 12 image that boots systemd and stands in for a
# bare-metal host. The tag is derived from this recipe and the CA certificates
# handed in, so the image is rebuilt only when one of them changes.
# Prints the image reference on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo="irontrack/debian12-systemd"
mirror="${IRONTRACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_dir=/usr/local/share/ca-certificates

log() { printf 'host-image.sh: %s\n' "$*" >&2; }
# shellcheck source=scripts/rootfs.sh
. "$here/rootfs.sh"

"$here/dockerd.sh"
command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

recipe_hash=$( {
    cat "$0" "$here/rootfs.sh"
    echo "$mirror"
    if [ -d "$ca_dir" ]; then find "$ca_dir" -type f -name '*.crt' -print0 | sort -z | xargs -0r cat; fi
} | sha256sum | cut -c1-12)
image="$repo:$recipe_hash"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi

log "building $image (debootstrap, about a minute)"
work=$(mktemp -d /var/tmp/irontrack-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

rootfs_debootstrap "$rootfs" systemd,systemd-sysv,python3,sudo,dbus,ca-certificates,iproute2,procps \
    "$work/debootstrap.log"

# Each container gets its own machine-id at first boot.
rm -f "$rootfs/etc/machine-id" "$rootfs/var/lib/dbus/machine-id"
: >"$rootfs/etc/machine-id"
# Nothing to log in on, and nothing that needs real hardware.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-modules-load.service sys-kernel-config.mount \
    sys-kernel-debug.mount sys-kernel-tracing.mount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    - "$image" >/dev/null
docker tag "$image" "$repo:latest"
log "built $image"
echo "$image"
