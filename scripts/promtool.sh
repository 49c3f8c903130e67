#!/usr/bin/env bash
# Prints the path of Debian 12's promtool (package prometheus), for `make lint`
# (promtool check rules / test rules). The package itself is not installed on this machine
# (its maintainer scripts would start a Prometheus server here): its .deb is downloaded once,
# promtool alone is extracted into a cache keyed by the package version, and reused.
#   scripts/promtool.sh            print the path (download and extract when missing)
set -euo pipefail

cache=${IRONTRACK_CACHE:-/var/cache/irontrack}/promtool
version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "promtool.sh: apt knows no prometheus package (run: apt-get update)" >&2
    exit 1
fi
dir="$cache/$(printf '%s' "$version" | tr -c 'A-Za-z0-9.+~-' '_')"
if [ ! -x "$dir/promtool" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download -q "prometheus=$version" >/dev/null 2>&1) || {
        echo "promtool.sh: cannot download prometheus=$version" >&2
        exit 1
    }
    dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
    mkdir -p "$dir"
    install -m 0755 "$work/x/usr/bin/promtool" "$dir/promtool.tmp"
    mv "$dir/promtool.tmp" "$dir/promtool"
fi
echo "$dir/promtool"
