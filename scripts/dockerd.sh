#!/usr/bin/env bash
# Ensure a Docker engine answers on this machine. Installs Debian's docker.io if
# missing and starts dockerd directly when no init system manages it (our build
# and CI machines have no systemd as PID 1).
set -euo pipefail

log() { printf 'dockerd.sh: %s\n' "$*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi

if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    log "starting docker.service"
    systemctl start docker
else
    # setsid: dockerd leads its own session, so ending the job (or the make) that started
    # it does not end the engine under every other user of this machine.
    log "starting dockerd in the background (log: /var/log/dockerd.log)"
    setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
log "dockerd did not answer within 60 s; last lines of /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
