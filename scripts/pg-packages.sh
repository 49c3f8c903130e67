#!/usr/bin/env bash
# Where the local host gets PostgreSQL 18 and PgBouncer from: the one switch
# IRONTRACK_PG_PACKAGES (read by inventories/local/group_vars/irontrack.yml):
#   auto    (default) PGDG itself when this machine reaches apt.postgresql.org, else the
#           PGDG-shaped mirror built here from Debian's sources (scripts/pgdg-mirror.sh)
#   pgdg    apt.postgresql.org
#   mirror  the local mirror (built once, cached)
#   debian  Debian 12's own PostgreSQL 15 / PgBouncer 1.18
# Records the resolved choice in $IRONTRACK_SECRETS_DIR/pg-packages (the inventory reads it
# for `auto`), builds the mirror when the choice is `mirror`, and prints the choice.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state_dir=${IRONTRACK_SECRETS_DIR:-$(cd "$here/.." && pwd)/.secrets/local}
probe=${IRONTRACK_PGDG_PROBE:-https://apt.postgresql.org/pub/repos/apt/dists/bookworm-pgdg/InRelease}
choice=${IRONTRACK_PG_PACKAGES:-auto}

case "$choice" in
pgdg | mirror | debian) ;;
auto)
    if curl -fsS -o /dev/null --max-time 5 "$probe" 2>/dev/null; then choice=pgdg; else choice=mirror; fi
    ;;
*)
    echo "pg-packages.sh: IRONTRACK_PG_PACKAGES must be auto, pgdg, mirror or debian (got '$choice')" >&2
    exit 1
    ;;
esac

if [ "$choice" = mirror ]; then
    "$here/pgdg-mirror.sh" >/dev/null
fi
mkdir -p "$state_dir"
echo "$choice" >"$state_dir/pg-packages"
echo "$choice"
