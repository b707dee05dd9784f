#!/usr/bin/env bash
# What Ansible ships to hosts that have no internet, built on the controller and cached.
#
#   scripts/wheelhouse.sh                 print the wheelhouse dir: every wheel that
#                                         `pip install --no-index --find-links DIR 'arete[server]'`
#                                         (or 'arete[agent]') needs, with this checkout's arete wheel
#   scripts/wheelhouse.sh --collections   print a collections path holding containers.podman,
#                                         community.general and ansible.posix (for ANSIBLE_COLLECTIONS_PATH)
#
# The dependency wheels are keyed by a hash of pyproject.toml and the Python version, in
# ~/.cache/arete/wheelhouse/<key>/ (ARETE_CACHE_DIR moves the cache): built once, then only
# the arete wheel is rebuilt, and the file is replaced only when its content changed (so a
# second Ansible run copies nothing). The wheels are for the controller's Python, which
# must be the hosts' (Debian 12: 3.11). The collections come out of the `ansible` wheel
# from PyPI (no Galaxy access here), into ~/.cache/arete/ansible-collections.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ARETE_CACHE_DIR:-$HOME/.cache/arete}
PYTHON=${ARETE_PYTHON:-$ROOT/.venv/bin/python}
HOST_PYTHON=3.11
ANSIBLE_SPEC='ansible>=12,<13'
# ansible.posix: its profile_tasks callback times each task in the deploy tier's logs.
COLLECTIONS=(containers/podman community/general ansible/posix)

die() {
    printf 'wheelhouse: FAILED: %s\n' "$*" >&2
    exit 1
}
mkdir -p "$CACHE"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

if [ "${1:-}" = --collections ]; then
    # Not named ansible_collections: Ansible takes a path with that name for the inner dir.
    target=$CACHE/ansible-collections
    missing() {
        local name
        for name in "${COLLECTIONS[@]}"; do
            [ -f "$target/ansible_collections/$name/MANIFEST.json" ] || return 0
        done
        return 1
    }
    if missing; then
        exec 9>"$CACHE/ansible-collections.lock"
        flock 9
    fi
    if missing; then
        work=$(mktemp -d "$CACHE/collections.XXXXXX")
        trap 'rm -rf -- "$work"' EXIT
        "$PYTHON" -m pip download -q --no-deps -d "$work/dl" "$ANSIBLE_SPEC" >&2 ||
            die "pip download $ANSIBLE_SPEC"
        # Each collection is moved into place whole (a rename): a run that uses the
        # path meanwhile sees it complete or not at all.
        "$PYTHON" - "$work/dl" "$work/out" "$target" "${COLLECTIONS[@]}" <<'EOF'
import sys, zipfile
from pathlib import Path

source, out, target, wanted = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
(wheel,) = source.glob("ansible-*.whl")
with zipfile.ZipFile(wheel) as archive:
    for name in wanted:
        final = target / "ansible_collections" / name
        if (final / "MANIFEST.json").is_file():
            continue
        prefix = f"ansible_collections/{name}/"
        members = [m for m in archive.namelist() if m.startswith(prefix)]
        if not members:
            sys.exit(f"wheelhouse: {name} is not in {wheel.name}")
        archive.extractall(out, members)
        final.parent.mkdir(parents=True, exist_ok=True)
        (out / "ansible_collections" / name).rename(final)
EOF
    fi
    echo "$target"
    exit 0
fi
[ "$#" -eq 0 ] || die "unknown argument '$1' (see the header of $0)"

version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$version" = "$HOST_PYTHON" ] ||
    die "$PYTHON is Python $version; the hosts run $HOST_PYTHON (set ARETE_PYTHON)"
key=$( (cat "$ROOT/pyproject.toml" && echo "$version") | sha256sum | cut -c1-16)
house=$CACHE/wheelhouse/$key
exec 9>"$CACHE/wheelhouse.lock"
flock 9
work=$(mktemp -d "$CACHE/wheelhouse-build.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
# Build from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
mkdir "$work/src"
tar -C "$ROOT" -c --exclude=__pycache__ pyproject.toml README.md \
    arete arete_cli edge_agent mosquitto maestro web_api | tar -C "$work/src" -x
if [ ! -f "$house/.complete" ]; then
    printf 'wheelhouse: building the dependency wheels into %s (once)\n' "$house" >&2
    "$PYTHON" -m pip wheel -q -w "$work/deps" "$work/src[server]" >"$work/log" 2>&1 ||
        { tail -n 30 "$work/log" >&2 && die "pip wheel '$ROOT[server]'"; }
    rm -f "$work"/deps/arete-*.whl
    rm -rf -- "$house"
    mkdir -p "$(dirname "$house")"
    mv "$work/deps" "$house"
    : >"$house/.complete"
fi
# This checkout's arete, rebuilt every time (the code changes, pyproject.toml may not).
"$PYTHON" -m pip wheel -q --no-deps -w "$work/arete" "$work/src" >"$work/log" 2>&1 ||
    { tail -n 30 "$work/log" >&2 && die "pip wheel --no-deps $ROOT"; }
for wheel in "$work"/arete/arete-*.whl; do
    name=$(basename "$wheel")
    # A zip holds timestamps: compare what is inside, and keep the old file when equal.
    if [ -f "$house/$name" ] && "$PYTHON" - "$wheel" "$house/$name" <<'EOF'; then continue; fi
import sys, zipfile

def content(path: str) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}

sys.exit(0 if content(sys.argv[1]) == content(sys.argv[2]) else 1)
EOF
    cp "$wheel" "$house/.$name.new"
    mv "$house/.$name.new" "$house/$name"
done
echo "$house"
