#!/usr/bin/env bash
# Build (once) the Debian 12 guest image the kernel scenario boots under QEMU: a real
# kernel, so every sysctl and the open-files limit can be proven live (molecule/kernel).
#
# Cached outside the repository in $IRONTRACK_VM_CACHE (default /var/cache/irontrack/vm),
# one directory per recipe hash (this script, the mirror and the CA certificates handed
# in), so it is rebuilt only when one of them changes. The directory holds:
#   disk.raw          ext4 root filesystem (read-only base; each VM runs on a qcow2 overlay)
#   vmlinuz, initrd   the guest's own kernel and initramfs (direct kernel boot)
#   id_ed25519[.pub]  the SSH key root logs in with (never in git)
#   ssh_host_ed25519_key.pub   the guest's host key, for strict host-key checking
# Prints the directory on stdout.
set -euo pipefail

mirror="${IRONTRACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${IRONTRACK_VM_CACHE:-/var/cache/irontrack/vm}"
ca_dir=/usr/local/share/ca-certificates
disk_size=4G
packages=systemd,systemd-sysv,dbus,linux-image-amd64,initramfs-tools,openssh-server,python3,sudo,iproute2,procps,ca-certificates

log() { printf 'vm-image.sh: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (debootstrap needs it)"
    exit 1
fi
for tool in debootstrap mkfs.ext4 ssh-keygen; do
    command -v "$tool" >/dev/null 2>&1 || {
        log "$tool is missing: run scripts/bootstrap.sh"
        exit 1
    }
done

recipe_hash=$( {
    cat "$0"
    echo "$mirror"
    if [ -d "$ca_dir" ]; then find "$ca_dir" -type f -name '*.crt' -print0 | sort -z | xargs -0r cat; fi
} | sha256sum | cut -c1-12)
out="$cache/debian12-$recipe_hash"

mkdir -p "$cache"
# One build at a time per cache (other checkouts may ask for the same image).
exec 9>"$cache/.lock"
flock 9

if [ -f "$out/disk.raw" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd" ] && [ -f "$out/id_ed25519" ]; then
    echo "$out"
    exit 0
fi

log "building $out (debootstrap with a kernel, about two minutes)"
work=$(mktemp -d "$cache/.build-$recipe_hash.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

# Hand in the extra CA certificates of this machine (e.g. a TLS-intercepting proxy).
if [ -d "$ca_dir" ] && [ -n "$(ls -A "$ca_dir" 2>/dev/null)" ]; then
    cp -a "$ca_dir/." "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
fi

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES

cat >"$root/etc/fstab" <<'FSTAB'
/dev/vda  /  ext4  errors=remount-ro  0  1
FSTAB
echo irontrack-vm >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 irontrack-vm
::1       localhost ip6-localhost ip6-loopback
HOSTS

# Network: DHCP from QEMU's user-mode network on any Ethernet interface (systemd-networkd);
# QEMU's built-in resolver answers at 10.0.2.3.
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
ssh-keygen -q -t ed25519 -N '' -C "irontrack-vm $recipe_hash" -f "$work/id_ed25519"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
cat >"$root/etc/ssh/sshd_config.d/irontrack-vm.conf" <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
SSHD
cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$work/ssh_host_ed25519_key.pub"

# Each boot of an overlay gets its own machine-id.
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
: >"$root/etc/machine-id"

cp "$(readlink -f "$root/vmlinuz")" "$work/vmlinuz"
cp "$(readlink -f "$root/initrd.img")" "$work/initrd"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*

# An ext4 image without loop devices: mkfs copies the tree in.
truncate -s "$disk_size" "$work/disk.raw"
mkfs.ext4 -q -F -L irontrack-root -d "$root" "$work/disk.raw"
chmod 0444 "$work/disk.raw"
rm -rf "$root" "$work/debootstrap.log"

mv "$work" "$out"
trap - EXIT
log "built $out"
echo "$out"
