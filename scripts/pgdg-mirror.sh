#!/usr/bin/env bash
# A PGDG-shaped apt repository built on this machine from Debian's own source packages,
# for hosts that cannot reach apt.postgresql.org (our build/CI machines, air-gapped sites).
#
#   scripts/pgdg-mirror.sh            build once (cached), print the mirror directory
#   scripts/pgdg-mirror.sh --path     print where the mirror for this recipe lives (no build)
#
# Layout, like apt.postgresql.org: dists/bookworm-pgdg/{InRelease,Release,Release.gpg}
# and dists/bookworm-pgdg/main/binary-amd64/Packages, pool/main/…, the public signing key
# (irontrack-pgdg.asc, its fingerprint in key.fingerprint) and a manifest of what was built
# from which source (MANIFEST). Contents:
#   - postgresql-18 and its binaries (postgresql-client-18, libpq5, libpq-dev, …): a backport
#     (~bpo12+1) of unstable's postgresql-18 source, built without LLVM JIT
#     (pkg.postgresql.nollvm: no postgresql-18-jit package) and without running the test suite;
#   - postgresql-common, postgresql-client-common, postgresql-common-dev: unstable's arch-all
#     binaries as they are;
#   - pgbouncer (>= 1.24) and pgbackrest (>= 2.56, optional: left out and named in MANIFEST
#     when no suite has its complete source), each from the first of testing/unstable/stable
#     whose Sources index names a new enough version whose pool files are all there, rebuilt
#     for bookworm the same way.
# Every source and binary is fetched by apt with a private configuration (never this
# machine's), verified against Debian's signed Release/Sources/Packages (debian-archive-keyring;
# the Valid-Until check is off for these unstable/testing/stable sources only, as unstable's
# has expired on this archive) and built in a clean `debootstrap --variant=buildd bookworm`
# chroot. The result is cached under $IRONTRACK_PGDG_CACHE/<recipe hash>/ (the hash covers the
# script's code, not its comments, and the Debian mirror URL); the signing key lives beside it
# in $IRONTRACK_PGDG_CACHE/signing/ (generated once per machine, never in git).
set -euo pipefail

root=${IRONTRACK_PGDG_CACHE:-/var/cache/irontrack/pgdg-mirror}
mirror=${IRONTRACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm-pgdg
bpo_suffix="~bpo12+1"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
jobs=${IRONTRACK_BUILD_JOBS:-$(nproc)}

# What the mirror holds: source package, suites to take it from (the first whose Sources
# index names a version >= the minimum and whose files are all there), minimum version,
# dpkg-buildpackage profiles, and whether the mirror is complete without it.
sources=(
    "pgbouncer testing,unstable,stable 1.24 nocheck required"
    "postgresql-18 unstable,testing 18 nocheck,pkg.postgresql.nollvm required"
    "pgbackrest unstable,testing,stable 2.56 nocheck optional"
)
arch_all=(postgresql-common postgresql-client-common postgresql-common-dev)

log() { printf 'pgdg-mirror.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

recipe_hash=$( {
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$0"
    echo "$mirror"
} | sha256sum | cut -c1-12)
out="$root/$recipe_hash"

case "${1:-}" in
--path)
    echo "$out"
    exit 0
    ;;
"") ;;
*) die "unknown argument '$1' (use --path or nothing)" ;;
esac

if [ -s "$out/MANIFEST" ] && [ -s "$out/dists/$suite/InRelease" ]; then
    echo "$out"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot)"
for tool in debootstrap apt-ftparchive gpg gpgv curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/bootstrap.sh installs it)"
done
[ -s "$keyring" ] || die "$keyring is missing (debian-archive-keyring)"

mkdir -p "$root"
exec 9>"$root/.lock"
if ! flock -n 9; then
    log "another build holds $root/.lock; waiting"
    flock 9
fi
# Built by the holder of the lock while we waited?
if [ -s "$out/MANIFEST" ] && [ -s "$out/dists/$suite/InRelease" ]; then
    echo "$out"
    exit 0
fi

started=$(date +%s)
work=$(mktemp -d /var/tmp/irontrack-pgdg.XXXXXX)
chroot_dir="$work/chroot"
cleanup() {
    local m
    for m in "$chroot_dir/proc" "$chroot_dir/dev/pts"; do
        if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

# --- a private apt: Debian's unstable and testing, verified with the archive keyring ------
apt_dir="$work/apt"
mkdir -p "$apt_dir"/{etc/apt.conf.d,etc/preferences.d,etc/sources.list.d,state/lists/partial,cache/archives/partial}
: >"$apt_dir/state/status"
cat >"$apt_dir/apt.conf" <<CONF
Dir::Etc "$apt_dir/etc";
Dir::Etc::main "apt.conf.main";
Dir::Etc::parts "apt.conf.d";
Dir::Etc::sourcelist "sources.list";
Dir::Etc::sourceparts "sources.list.d";
Dir::Etc::preferences "preferences";
Dir::Etc::preferencesparts "preferences.d";
Dir::Etc::trusted "trusted.gpg";
Dir::Etc::trustedparts "trusted.gpg.d";
Dir::State "$apt_dir/state";
Dir::State::status "$apt_dir/state/status";
Dir::Cache "$apt_dir/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "3";
CONF
: >"$apt_dir/etc/sources.list"
# Unstable's and testing's Release files carry a Valid-Until that has expired on this
# archive: the check is off for these sources only (this private list). Signatures are
# still checked against Debian's archive keyring.
cat >"$apt_dir/etc/sources.list.d/debian.sources" <<SRC
Types: deb deb-src
URIs: $mirror
Suites: unstable testing stable
Components: main
Signed-By: $keyring
Check-Valid-Until: no
SRC
export APT_CONFIG="$apt_dir/apt.conf"
papt() { apt-get -q -o Debug::NoLocking=1 "$@"; }

log "reading unstable's and testing's indexes (signed by Debian's archive key)"
papt update >"$work/apt-update.log" 2>&1 || {
    tail -n 20 "$work/apt-update.log" >&2
    die "apt-get update failed for the private unstable/testing configuration"
}

stage="$work/stage"
mkdir -p "$stage/src" "$stage/debs"
manifest="$work/MANIFEST"
{
    echo "# IronTrack PGDG-shaped mirror, recipe $recipe_hash, built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
    echo "# source package | suite | Debian version | built version | .dsc sha256"
} >"$manifest"

# apt resolves "$name/$suite" to the newest version in that suite's Sources index and checks
# every file it downloads against the index's SHA256 (the index is covered by the signed
# Release). Some pool files of unstable can be missing: then the next suite is tried.
suite_version() { # name suite -> newest version of source package `name` in the suite's Sources
    local f
    f=$(find "$apt_dir/state/lists" -name "*_dists_${2}_main_source_Sources*" | head -n1)
    [ -n "$f" ] || return 0
    /usr/lib/apt/apt-helper cat-file "$f" | awk -v want="$1" '
        /^Package: / { pkg = $2 } /^Version: / { ver = $2 }
        /^$/ { if (pkg == want) print ver; pkg = "" }
        END { if (pkg == want) print ver }' | sort -V | tail -n1
}

fetch_source() { # name suites minimum -> $stage/src/$name, prints "suite version"
    local name=$1 suites=$2 minimum=$3 s ver dir
    for s in ${suites//,/ }; do
        ver=$(suite_version "$name" "$s")
        if [ -z "$ver" ] || ! dpkg --compare-versions "$ver" ge "$minimum"; then
            log "$name: $s has ${ver:-no version} (need >= $minimum); trying the next suite"
            continue
        fi
        dir="$stage/src/$name"
        rm -rf "$dir" && mkdir -p "$dir"
        if (cd "$dir" && papt source --download-only "$name/$s" >"$work/fetch-$name-$s.log" 2>&1); then
            echo "$s $(sed -n 's/^Version: //p' "$dir"/*.dsc | head -n1)"
            return 0
        fi
        log "$name: $s's $ver is not complete in the archive ($(grep -m1 -o '404.*' "$work/fetch-$name-$s.log" || tail -n1 "$work/fetch-$name-$s.log")); trying the next suite"
    done
    log "$name: no suite of '$suites' delivered a complete, verified source >= $minimum"
    return 1
}

# --- arch-all postgresql-common family from unstable, as they are --------------------------
for p in "${arch_all[@]}"; do
    (cd "$stage/debs" && papt download "$p/unstable" >"$work/download-$p.log" 2>&1) || {
        tail -n 5 "$work/download-$p.log" >&2
        die "could not download $p from unstable"
    }
done
for deb in "$stage"/debs/*.deb; do
    printf '%s | unstable | %s | %s (as is) | -\n' "$(dpkg-deb -f "$deb" Package)" \
        "$(dpkg-deb -f "$deb" Version)" "$(dpkg-deb -f "$deb" Version)" >>"$manifest"
done

# --- the build chroot -------------------------------------------------------------------------
log "creating a clean bookworm build chroot (debootstrap --variant=buildd)"
debootstrap --variant=buildd bookworm "$chroot_dir" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed"
}
cat >"$chroot_dir/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
mount -t proc proc "$chroot_dir/proc"
in_chroot() { chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
in_chroot apt-get -q update >"$work/chroot-update.log" 2>&1 || die "apt-get update in the chroot failed"
in_chroot apt-get -q -y dist-upgrade >>"$work/chroot-update.log" 2>&1 || die "upgrading the chroot failed"
# postgresql-18 needs unstable's postgresql-common-dev (pg_buildext knows 18); the three
# come together (postgresql-common and -client-common are versioned alike).
mkdir -p "$chroot_dir/tmp/debs"
cp "$stage"/debs/*.deb "$chroot_dir/tmp/debs/"
in_chroot sh -c 'apt-get -q -y install /tmp/debs/*.deb' \
    >"$work/chroot-common.log" 2>&1 || {
    tail -n 20 "$work/chroot-common.log" >&2
    die "installing unstable's postgresql-common-dev in the chroot failed"
}

# --- backports ---------------------------------------------------------------------------------
stamp=$(date -R)
build_source() { # name from version profiles -> .debs in $stage/debs; 1 on failure (logged)
    local name=$1 from=$2 version=$3 profiles=$4 bpo="${3}${bpo_suffix}" build dsc dsc_sha t0
    log "building $name $bpo (from $from's $version; profiles $profiles)"
    t0=$(date +%s)
    build="$chroot_dir/build/$name"
    mkdir -p "$build"
    cp "$stage/src/$name"/* "$build/"
    dsc=$(cd "$build" && ls ./*.dsc)
    dsc_sha=$(sha256sum "$build/$dsc" | cut -d' ' -f1)
    # dpkg-source checks every file against the .dsc's checksums.
    in_chroot sh -c "cd /build/$name && dpkg-source -x $dsc src" >"$work/build-$name.log" 2>&1 || {
        log "$name: dpkg-source -x $dsc failed"
        return 1
    }
    {
        printf '%s (%s) %s; urgency=medium\n\n' "$name" "$bpo" "$suite"
        printf '  * Rebuild for Debian 12 (bookworm) in the IronTrack PGDG-shaped mirror.\n\n'
        printf ' -- IronTrack PGDG mirror <root@localhost>  %s\n\n' "$stamp"
        cat "$build/src/debian/changelog"
    } >"$build/changelog.new"
    mv "$build/changelog.new" "$build/src/debian/changelog"
    in_chroot sh -c "cd /build/$name/src && apt-get -q -y --no-install-recommends build-dep -P '$profiles' ." \
        >>"$work/build-$name.log" 2>&1 || {
        tail -n 30 "$work/build-$name.log" >&2
        log "$name: build dependencies are not satisfiable on bookworm"
        return 1
    }
    in_chroot sh -c "cd /build/$name/src && DEB_BUILD_OPTIONS='nocheck noddebs parallel=$jobs' \
        dpkg-buildpackage -B -us -uc -P'$profiles'" >>"$work/build-$name.log" 2>&1 || {
        tail -n 40 "$work/build-$name.log" >&2
        log "$name: dpkg-buildpackage failed"
        return 1
    }
    cp "$build"/*.deb "$stage/debs/"
    printf '%s | %s | %s | %s | %s (%ss)\n' "$name" "$from" "$version" "$bpo" "$dsc_sha" \
        "$(($(date +%s) - t0))" >>"$manifest"
    log "built $name $bpo in $(($(date +%s) - t0)) s"
    rm -rf "$build"
}

for entry in "${sources[@]}"; do
    read -r name suites minimum profiles need <<<"$entry"
    if fetch_source "$name" "$suites" "$minimum" >"$work/fetched-$name"; then
        read -r from version <"$work/fetched-$name"
        build_source "$name" "$from" "$version" "$profiles" && continue
        why="built from $from's $version failed"
    else
        why="no complete source >= $minimum in $suites"
    fi
    # An optional package is left out (and named in the manifest); a required one stops here.
    [ "$need" = optional ] || die "$name: $why"
    printf '%s | %s | - | NOT BUILT: %s | -\n' "$name" "$suites" "$why" >>"$manifest"
done

# --- the repository ----------------------------------------------------------------------------
new="$root/.$recipe_hash.new"
rm -rf "$new"
mkdir -p "$new/dists/$suite/main/binary-amd64"
for deb in "$stage"/debs/*.deb; do
    src=$(dpkg-deb -f "$deb" Source | cut -d' ' -f1)
    [ -n "$src" ] || src=$(dpkg-deb -f "$deb" Package)
    mkdir -p "$new/pool/main/${src:0:1}/$src"
    cp "$deb" "$new/pool/main/${src:0:1}/$src/"
done
(cd "$new" && apt-ftparchive packages pool >"dists/$suite/main/binary-amd64/Packages")
gzip -9 -k "$new/dists/$suite/main/binary-amd64/Packages"
(cd "$new/dists/$suite" && apt-ftparchive \
    -o APT::FTPArchive::Release::Origin="IronTrack PGDG mirror" \
    -o APT::FTPArchive::Release::Label="PostgreSQL for Debian (rebuilt from Debian sources)" \
    -o APT::FTPArchive::Release::Suite="$suite" \
    -o APT::FTPArchive::Release::Codename="$suite" \
    -o APT::FTPArchive::Release::Architectures="amd64" \
    -o APT::FTPArchive::Release::Components="main" \
    release . >"$work/Release")
mv "$work/Release" "$new/dists/$suite/Release"

# The signing key: generated once per machine, kept beside the mirrors, never in git.
export GNUPGHOME="$root/signing"
if [ ! -d "$GNUPGHOME" ] || ! gpg --batch --list-secret-keys 2>/dev/null | grep -q .; then
    log "generating the mirror's signing key in $GNUPGHOME"
    rm -rf "$GNUPGHOME"
    mkdir -m 0700 -p "$GNUPGHOME"
    gpg --batch --quiet --passphrase '' --pinentry-mode loopback \
        --quick-gen-key "IronTrack PGDG mirror ($(uname -n)) <root@localhost>" ed25519 sign never 2>/dev/null
fi
fpr=$(gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr:/{print $10; exit}')
gpg --batch --yes --armor --export "$fpr" >"$new/irontrack-pgdg.asc"
echo "$fpr" >"$new/key.fingerprint"
gpg --batch --yes --local-user "$fpr" --clearsign -o "$new/dists/$suite/InRelease" "$new/dists/$suite/Release"
gpg --batch --yes --local-user "$fpr" -abs -o "$new/dists/$suite/Release.gpg" "$new/dists/$suite/Release"
gpg --batch --yes --dearmor <"$new/irontrack-pgdg.asc" >"$work/check.gpg"
gpgv --keyring "$work/check.gpg" "$new/dists/$suite/InRelease" 2>/dev/null || die "InRelease does not verify"
gpgconf --kill gpg-agent
unset GNUPGHOME

{
    cat "$manifest"
    echo "# signing key: $fpr"
    echo "# binaries:"
    (cd "$new" && find pool -name '*.deb' -print0 | sort -z | xargs -0 sha256sum)
    echo "# build time: $(($(date +%s) - started)) s"
} >"$new/MANIFEST"
chmod -R a+rX "$new"
rm -rf "$out"
mv "$new" "$out"
log "mirror ready in $out after $(($(date +%s) - started)) s"
echo "$out"
