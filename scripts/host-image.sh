#!/usr/bin/env bash
# Build the deploy tier's systemd host image once, and print its name on stdout.
#
#   scripts/host-image.sh           build when missing; print e.g. localhost/arete-host:3f2a...
#   scripts/host-image.sh --env     print the podman environment (CONTAINERS_CONF=...,
#                                   CONTAINERS_STORAGE_CONF=...) as shell assignments
#
# A Debian bookworm root filesystem from debootstrap, with every package the Ansible
# roles need baked in (the hosts of the deploy tier have no internet): systemd as PID 1,
# Python for Ansible and the venv, Mosquitto and the compiler + headers for the broker's
# client-id plugin, Caddy. Imported into a persistent podman store under
# ~/.cache/arete/podman (its own storage.conf and containers.conf: runc, lowered
# ulimits, see ../shared/RECIPES.md), tagged with a hash of the suite, the packages and
# RECIPE: a change there builds a new image, otherwise the cached one is used (~0.1 s).
#
# Needs root (debootstrap, podman's rootful store) and the Debian mirror apt uses
# (from /etc/apt/sources.list*, or ARETE_DEBIAN_MIRROR). ARETE_CACHE_DIR moves the cache.
set -euo pipefail

SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
CACHE=${ARETE_CACHE_DIR:-$HOME/.cache/arete}
STORE=$CACHE/podman
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,mosquitto,caddy
PACKAGES+=,ca-certificates,procps,iproute2,curl,sudo,gcc,libc6-dev,mosquitto-dev
PACKAGES+=,libmosquitto-dev,openssl
# Bump when the steps after debootstrap change: the tag hashes this, the suite and packages.
RECIPE=1

say() { printf 'host-image: %s\n' "$*" >&2; }
die() {
    printf 'host-image: FAILED: %s\n' "$*" >&2
    exit 1
}

# podman refuses a runroot path over 50 characters: the runroot lives under /tmp.
RUNROOT=/tmp/arete-podman-$(id -u)
mkdir -p "$STORE/root" "$RUNROOT"
cat >"$STORE/containers.conf.new" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
cat >"$STORE/storage.conf.new" <<EOF
[storage]
driver = "vfs"
graphroot = "$STORE/root"
runroot = "$RUNROOT"
EOF
for conf in containers.conf storage.conf; do
    if cmp -s "$STORE/$conf.new" "$STORE/$conf"; then
        rm -f "$STORE/$conf.new"
    else
        mv "$STORE/$conf.new" "$STORE/$conf"
    fi
done
export CONTAINERS_CONF=$STORE/containers.conf CONTAINERS_STORAGE_CONF=$STORE/storage.conf

if [ "${1:-}" = --env ]; then
    printf 'CONTAINERS_CONF=%s\nCONTAINERS_STORAGE_CONF=%s\n' "$CONTAINERS_CONF" \
        "$CONTAINERS_STORAGE_CONF"
    exit 0
fi
[ "$#" -eq 0 ] || die "unknown argument '$1' (see the header of $SELF)"

IMAGE=localhost/arete-host:$(printf '%s %s %s' "$SUITE" "$PACKAGES" "$RECIPE" | sha256sum | cut -c1-16)
if podman image exists "$IMAGE"; then
    echo "$IMAGE"
    exit 0
fi

# Two test sessions at once build one image, not two.
exec 9>"$STORE/build.lock"
flock 9
if podman image exists "$IMAGE"; then
    echo "$IMAGE"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and podman's rootful store)"
command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/setup.sh --dev)"
command -v podman >/dev/null || die "podman is missing (scripts/setup.sh --dev)"

mirror() {
    # The first Debian archive (not the security one) that apt uses, deb822 or one-line.
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null || true; } | sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}//p' |
        tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -n1 || true
}
MIRROR=${ARETE_DEBIAN_MIRROR:-$(mirror)}
[ -n "$MIRROR" ] || die "no Debian mirror in /etc/apt/sources.list*: set ARETE_DEBIAN_MIRROR"

WORK=$(mktemp -d "$CACHE/host-build.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
ROOTFS=$WORK/rootfs
say "building $IMAGE: debootstrap $SUITE from $MIRROR (about 2 minutes, once)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1; then
    tail -n 40 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log above)"
fi

# Each host boots with its own machine id (an empty file: systemd makes one at boot).
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
# No downloaded packages in the image; the package lists stay (apt state=present reads them).
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS/var/log/bootstrap.log"

tar -C "$ROOTFS" --numeric-owner -c . |
    podman import --quiet --change 'CMD ["/sbin/init"]' - "$IMAGE" >/dev/null ||
    die "podman import failed"
say "built $IMAGE"
echo "$IMAGE"
