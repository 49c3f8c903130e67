#!/usr/bin/env bash
# Build (once) the Debian 12 guest image the kernel scenario boots under QEMU: a real
# kernel, so every sysctl and the open-files limit can be proven live (molecule/kernel).
#
# Two layers, each cached outside the repository in $IRONTRACK_VM_CACHE (default
# /var/cache/irontrack/vm) under its own recipe hash, so each is rebuilt only when its
# own recipe changes:
#   debian12-base-HASH/root.tar   debootstrap (minbase, kernel, sshd, python3), recipe:
#                                 build_base below, the mirror, the CA certificates handed in
#   debian12-HASH/                the bootable image, recipe: the base layer's hash,
#                                 build_image below and the package list
#     disk.raw          ext4 root filesystem (read-only; each VM runs on a qcow2 overlay)
#     vmlinuz, initrd   the guest's own kernel and initramfs (direct kernel boot)
#     id_ed25519[.pub]  the SSH key root logs in with (never in git)
#     ssh_host_ed25519_key.pub   the guest's host key, for strict host-key checking
# The bootable layer has the packages the scenario converges already installed (base,
# Valkey from bookworm-backports) and the pending updates applied, done in a chroot at
# native speed: the converge runs every apt task unchanged and finds them installed
# instead of unpacking them at TCG speed. Nothing of IronTrack is configured here; every
# configuration file is the converge's. Two things only make the guest faster under TCG:
# scripts/vm_zipimport_cache.py (Python keeps the compiled code of Ansible's zipped
# module_utils, about 5 s of each task's 7 s) and e2scrub_reap masked (nothing under
# test, 4-5 s of every boot), and apt stamps its updates (cache_valid_time works; see
# build_image). Prints the bootable layer's directory on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mirror="${IRONTRACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${IRONTRACK_VM_CACHE:-/var/cache/irontrack/vm}"
ca_dir=/usr/local/share/ca-certificates
disk_size=4G
base_packages=systemd,systemd-sysv,dbus,linux-image-amd64,initramfs-tools,openssh-server,python3,sudo,iproute2,procps,ca-certificates
# Valkey comes from bookworm-backports (roles/valkey); the source is written as the
# role's deb822_repository task writes it, so the converge finds it unchanged.
backports_suite=bookworm-backports
backports_keyring=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf 'vm-image.sh: %s\n' "$*" >&2; }
# shellcheck source=scripts/rootfs.sh
. "$here/scripts/rootfs.sh"

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (debootstrap and chroot need it)"
    exit 1
fi
for tool in debootstrap mkfs.ext4 ssh-keygen python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        log "$tool is missing: run scripts/bootstrap.sh"
        exit 1
    }
done

# The packages of what the scenario converges (molecule/kernel: base, kernel, the
# hardening role's sysctls, Valkey): read from the base role's defaults (so the layer
# follows them), plus the ones the valkey role's tasks name literally. A package missing
# here only costs time: the converge installs it.
role_packages=$(python3 - "$here/roles" <<'PY'
import sys
from pathlib import Path

import yaml

roles = Path(sys.argv[1])
packages = yaml.safe_load((roles / "base" / "defaults" / "main.yml").read_text())["base_packages"]
packages += ["python3-debian", "debian-archive-keyring", "openssh-server"]
print(" ".join(sorted(set(packages))))
PY
)
zipimport_cache="$here/scripts/vm_zipimport_cache.py"
backports_packages="valkey-server valkey-tools"

build_base() { # $1: work directory; leaves $1/root.tar
    local root="$1/root"
    rootfs_debootstrap "$root" "$base_packages" "$1/debootstrap.log" || return 1
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/*
    tar --numeric-owner --xattrs --acls -C "$root" -cf "$1/root.tar" .
    rm -rf "$root" "$1/debootstrap.log"
}

build_image() { # $1: work directory, $2: base layer directory, $3: recipe hash
    local root="$1/root"
    mkdir "$root"
    tar --numeric-owner --xattrs --acls -C "$root" -xf "$2/root.tar"

    # Packages, installed in a chroot (no service starts: policy-rc.d).
    cat >"$root/etc/apt/sources.list.d/debian-backports.sources" <<SOURCES
Components: main
X-Repolib-Name: debian-backports
Signed-By: $backports_keyring
Suites: $backports_suite
Types: deb
URIs: $mirror
SOURCES
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    local apt=(chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get -q -y -o Dpkg::Options::=--force-confold)
    {
        "${apt[@]}" update &&
            "${apt[@]}" upgrade &&
            # shellcheck disable=SC2086
            "${apt[@]}" install --no-install-recommends $role_packages &&
            # shellcheck disable=SC2086
            "${apt[@]}" install --no-install-recommends -t "$backports_suite" $backports_packages
    } >"$1/apt.log" 2>&1 || {
        tail -n 30 "$1/apt.log" >&2
        return 1
    }
    umount "$root/proc"
    rm -f "$root/usr/sbin/policy-rc.d" "$1/apt.log"
    chroot "$root" apt-get clean
    # The package lists stay (the converge's apt tasks refresh them when they are older
    # than their cache_valid_time, as on any host).

    cat >"$root/etc/fstab" <<'FSTAB'
/dev/vda  /  ext4  errors=remount-ro  0  1
FSTAB
    echo irontrack-vm >"$root/etc/hostname"
    cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 irontrack-vm
::1       localhost ip6-localhost ip6-loopback
HOSTS

    # Network: DHCP from QEMU's user-mode network on any Ethernet interface
    # (systemd-networkd); QEMU's built-in resolver answers at 10.0.2.3.
    cat >"$root/etc/systemd/network/50-dhcp.network" <<'NET'
[Match]
Type=ether

[Network]
DHCP=ipv4
NET
    chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
    rm -f "$root/etc/resolv.conf"
    echo "nameserver 10.0.2.3" >"$root/etc/resolv.conf"

    # Root logs in with this image's own key only.
    ssh-keygen -q -t ed25519 -N '' -C "irontrack-vm $3" -f "$1/id_ed25519"
    install -d -m 0700 "$root/root/.ssh"
    install -m 0600 "$1/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
    cat >"$root/etc/ssh/sshd_config.d/irontrack-vm.conf" <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
SSHD
    cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$1/ssh_host_ed25519_key.pub"

    # Python keeps the compiled code of zip-imported modules (Ansible's module_utils).
    local site
    site="$root$(chroot "$root" python3 -c 'import site; print(site.getsitepackages()[0])')"
    install -d -m 0755 "$site"
    install -m 0644 "$zipimport_cache" "$site/irontrack_zipimport_cache.py"
    echo "import irontrack_zipimport_cache" >"$site/irontrack-zipimport-cache.pth"
    # apt records each successful update (as Ubuntu's update-notifier-common does), so the
    # apt module's cache_valid_time sees when the lists were last refreshed. Without the
    # stamp it reads the mtime of /var/lib/apt/lists, which an update whose lists did not
    # change leaves at the image's build time: every apt task with cache_valid_time then
    # refreshed the lists again, 1.5-2 min each under TCG (measured).
    echo 'APT::Update::Post-Invoke-Success {"touch /var/lib/apt/periodic/update-success-stamp 2>/dev/null || true";};' \
        >"$root/etc/apt/apt.conf.d/15irontrack-update-stamp"
    install -d -m 0755 "$root/var/lib/apt/periodic"
    # Not under test, and 4-5 s of every boot under TCG.
    chroot "$root" systemctl mask e2scrub_reap.service >/dev/null 2>&1

    # Each boot of an overlay gets its own machine-id.
    rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
    : >"$root/etc/machine-id"

    cp "$(readlink -f "$root/vmlinuz")" "$1/vmlinuz"
    cp "$(readlink -f "$root/initrd.img")" "$1/initrd"

    # An ext4 image without loop devices: mkfs copies the tree in.
    truncate -s "$disk_size" "$1/disk.raw"
    mkfs.ext4 -q -F -L irontrack-root -d "$root" "$1/disk.raw"
    chmod 0444 "$1/disk.raw"
    rm -rf "$root"
}

hash_of() { sha256sum | cut -c1-12; }
base_hash=$( {
    declare -f build_base rootfs_debootstrap
    echo "$mirror $base_packages"
    if [ -d "$ca_dir" ]; then find "$ca_dir" -type f -name '*.crt' -print0 | sort -z | xargs -0r cat; fi
} | hash_of)
image_hash=$( {
    echo "$base_hash"
    declare -f build_image
    echo "$mirror $role_packages | $backports_suite $backports_packages"
    cat "$zipimport_cache"
} | hash_of)
base="$cache/debian12-base-$base_hash"
out="$cache/debian12-$image_hash"

mkdir -p "$cache"
# One build at a time per cache (other checkouts may ask for the same image).
exec 9>"$cache/.lock"
flock 9

# The layer being built, removed (with the chroot's /proc unmounted) unless it was finished.
work=
cleanup() {
    if [ -n "$work" ]; then
        if mountpoint -q "$work/root/proc" 2>/dev/null; then umount "$work/root/proc"; fi
        rm -rf "$work"
    fi
}
trap cleanup EXIT

if [ -f "$out/disk.raw" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd" ] && [ -f "$out/id_ed25519" ]; then
    echo "$out"
    exit 0
fi

if [ ! -f "$base/root.tar" ]; then
    log "building $base (debootstrap with a kernel, about two minutes)"
    work=$(mktemp -d "$cache/.build-base-$base_hash.XXXXXX")
    build_base "$work"
    mv "$work" "$base"
    work=
    log "built $base"
fi

log "building $out (the roles' packages in a chroot over $base, about two minutes)"
work=$(mktemp -d "$cache/.build-$image_hash.XXXXXX")
build_image "$work" "$base" "$image_hash"
mv "$work" "$out"
work=
log "built $out"
echo "$out"
