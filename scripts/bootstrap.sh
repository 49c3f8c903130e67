#!/usr/bin/env bash
# Everything a fresh Debian 12 machine (as root) needs to run `make up` / `make test`:
# Debian packages (Docker engine, debootstrap, the real PgBouncer/Valkey the service tests
# start, wrk, mkcert, QEMU and e2fsprogs for the kernel scenario's VM), a running dockerd,
# and the Python virtualenv with the tooling and the service. Safe to re-run; it only does what is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=${VENV:-$repo/.venv}

log() { printf 'bootstrap: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: run as root (it installs Debian packages and starts dockerd)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
backports=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding Debian bookworm-backports (valkey-server)"
    cat >"$backports" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

packages=(docker.io debootstrap pgbouncer wrk mkcert python3-venv git make
    qemu-system-x86 qemu-utils e2fsprogs openssh-client)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
dpkg-query -W -f='${Status}' valkey-server 2>/dev/null | grep -q 'ok installed' || missing+=(valkey-server)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    for p in "${missing[@]}"; do
        if [ "$p" = valkey-server ]; then
            apt-get install -y -qq -t bookworm-backports valkey-server >/dev/null
        else
            apt-get install -y -qq "$p" >/dev/null
        fi
    done
fi
# Debian starts these as system services where systemd runs; the tests start their own.
for svc in pgbouncer valkey-server; do
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done

"$here/dockerd.sh"

stamp="$venv/.irontrack-stamp"
want=$(cat "$repo/pyproject.toml" "$repo/service/pyproject.toml" 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating the virtualenv $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade 'pip>=25.1'
    "$venv/bin/pip" install -q --group "$repo/pyproject.toml:dev"
    if [ -f "$repo/service/pyproject.toml" ]; then
        "$venv/bin/pip" install -q -e "$repo/service[test,uvicorn]"
    fi
    echo "$want" >"$stamp"
fi
log "ready"
