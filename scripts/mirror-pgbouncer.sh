#!/usr/bin/env bash
# The PGDG mirror's PgBouncer (>= 1.21) as a plain binary for the service tests: the .deb is
# unpacked with `dpkg-deb -x` into a cache directory beside the mirror — nothing is installed
# system-wide and no apt source is added. Its shared libraries (libevent, c-ares, OpenSSL,
# libsystemd) are bookworm's, present with Debian's pgbouncer that scripts/bootstrap.sh
# installs. Builds the mirror first if needed. Prints the binary's path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mirror=$("$here/pgdg-mirror.sh")
deb=$(find "$mirror/pool/main/p/pgbouncer" -name 'pgbouncer_*_amd64.deb' | sort -V | tail -n1)
[ -n "$deb" ] || {
    echo "mirror-pgbouncer.sh: no pgbouncer package in $mirror" >&2
    exit 1
}
dest="$(dirname "$mirror")/extracted/$(basename "$deb" .deb)-$(sha256sum "$deb" | cut -c1-12)"
if [ ! -x "$dest/usr/sbin/pgbouncer" ]; then
    mkdir -p "$(dirname "$dest")"
    tmp=$(mktemp -d "$dest.XXXXXX")
    dpkg-deb -x "$deb" "$tmp"
    chmod 0755 "$tmp"
    rm -rf "$dest"
    mv "$tmp" "$dest"
fi
"$dest/usr/sbin/pgbouncer" --version >/dev/null || {
    echo "mirror-pgbouncer.sh: $dest/usr/sbin/pgbouncer does not run here (missing libraries?)" >&2
    exit 1
}
echo "$dest/usr/sbin/pgbouncer"
