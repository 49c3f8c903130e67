#!/usr/bin/env bash
# Start a throwaway Debian 12 host container that boots systemd, with the same
# options the Molecule scenario uses. Usage: host-run.sh NAME [docker run args…]
# Prints the container name. Remove it with: docker rm -f NAME
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: host-run.sh NAME [docker run args...]}
shift
image=$("$here/host-image.sh")

# Every capability but SYS_RESOURCE, which this machine withholds from all
# processes (so --privileged cannot work here).
caps=(AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND CHOWN
    DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE
    LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE
    NET_BROADCAST NET_RAW SETFCAP SETGID SETPCAP SETUID SYS_ADMIN SYS_BOOT
    SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO SYS_TIME
    SYS_TTY_CONFIG SYSLOG WAKE_ALARM)
cap_args=()
for c in "${caps[@]}"; do cap_args+=(--cap-add "$c"); done

docker run -d --name "$name" --hostname "$name" \
    --cap-drop ALL "${cap_args[@]}" \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 \
    "$@" "$image" /lib/systemd/systemd >/dev/null

for _ in $(seq 1 60); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in
        running) echo "$name"; exit 0 ;;
        degraded)
            docker exec "$name" systemctl --failed --no-legend >&2 || true
            echo "$name"; exit 0 ;;
    esac
    sleep 1
done
echo "host-run.sh: $name did not reach 'running' (last state: ${state:-unknown})" >&2
exit 1
