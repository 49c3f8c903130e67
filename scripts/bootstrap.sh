#!/usr/bin/env bash
# Everything a fresh Debian 12 machine (as root) needs to run `make up` / `make test`:
# Debian packages (Docker engine, debootstrap, the real PgBouncer/Valkey the service tests
# start — PgBouncer's libraries also serve the PGDG mirror's newer PgBouncer the tests run —,
# wrk, mkcert, nftables (the firewall role tests check rendered rulesets with `nft -c`),
# apt-utils/gpg/curl for scripts/pgdg-mirror.sh, gpg-agent for the local backup key pair
# (role backup generates it on the controller), QEMU and e2fsprogs for the
# kernel scenario's VM), a running dockerd, and the
# Python virtualenv with the tooling and the service. Safe to re-run; it only does what is
# missing.
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

packages=(docker.io debootstrap pgbouncer wrk mkcert python3-venv git make apt-utils gpg gpg-agent curl
    qemu-system-x86 qemu-utils e2fsprogs openssh-client nftables)
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

# The virtualenv runs on Debian 12's own python3 (3.11.2), the interpreter the production
# host runs the service on, so the service tests run on exactly that one (README: Python).
# Its packages come from requirements-dev.lock, hashes required (make lock rewrites it).
python=${IRONTRACK_PYTHON:-/usr/bin/python3}
stamp="$venv/.irontrack-stamp"
want=$( (cat "$repo/requirements-dev.lock" "$repo/service/pyproject.toml"; "$python" -VV) | sha256sum | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating the virtualenv $venv ($("$python" -V) from $python, requirements-dev.lock)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps \
        -r "$repo/requirements-dev.lock"
    # The service itself, editable, built by the locked hatchling (no unpinned build env).
    "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$repo/service"
    "$venv/bin/pip" check >/dev/null
    echo "$want" >"$stamp"
fi
log "ready"
