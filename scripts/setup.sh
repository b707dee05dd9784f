#!/usr/bin/env bash
# Install what Areté needs on this machine. Idempotent: a second run does nothing and
# prints nothing. Used by scripts/up.sh (runtime) and scripts/test.sh (--dev).
#
#   scripts/setup.sh         Mosquitto, its clients, OpenSSL, Python >= 3.11 with venv,
#                            and .venv with `pip install -e '.[server,docker]'`
#   scripts/setup.sh --dev   the above plus what only the tests and benchmarks need
#                            (Xvfb, podman, busybox-static, prometheus-node-exporter,
#                            victoria-metrics, chromium for the browser tests),
#                            and .venv with `pip install -e '.[dev]'`
#
# System packages come from apt (Debian 12 / Ubuntu), as root or through sudo. On other
# systems install the equivalents yourself and set ARETE_SKIP_SYSTEM_PACKAGES=1.
# ARETE_PYTHON=/path/to/python3.x picks the interpreter for a new .venv.
set -euo pipefail

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

dev=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        -h | --help) usage && exit 0 ;;
        *) echo "setup: unknown argument '$arg' (try --help)" >&2 && exit 2 ;;
    esac
done

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.arete-stamp"
cd "$ROOT"

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

LOG=$(mktemp "${TMPDIR:-/tmp}/arete-setup.XXXXXX")
trap 'rm -f "$LOG"' EXIT
trap 'echo "setup: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

say() { printf 'setup: %s\n' "$*"; }

die() {
    echo "setup: FAILED: $*" >&2
    exit 1
}

# step DESCRIPTION COMMAND...: silent on success; on failure name the step, show its output.
step() {
    local what=$1
    shift
    if ! "$@" >"$LOG" 2>&1; then
        {
            echo
            echo "setup: FAILED while $what"
            echo "setup: command: $*"
            if [ -s "$LOG" ]; then
                echo "----- its output (last 60 lines) -----"
                tail -n 60 "$LOG"
                echo "--------------------------------------"
            fi
        } >&2
        exit 1
    fi
}

# Two setups at once (up.sh in one terminal, test.sh in another) must not race on .venv.
if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/arete-setup-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1).lock"
    exec 9>"$lock"
    flock 9
fi

# ---------------------------------------------------------------- system packages

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        # No terminal (CI): fail at once instead of waiting for a password nobody types.
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        echo "not root and sudo is not installed" >&2
        return 1
    fi
}

package_installed() {
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
    else
        return 1
    fi
}

python_is_recent() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

python_can_venv() {
    # Debian ships ensurepip (which venv needs) in python3-venv, not with python3 itself.
    "$1" -c 'import ensurepip, venv' >/dev/null 2>&1
}

venv_healthy() {
    [ -x "$VENV/bin/python" ] && python_is_recent "$VENV/bin/python" &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${ARETE_PYTHON:-}" python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if python_is_recent "$candidate" && python_can_venv "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# gcc, libc6-dev and the two Mosquitto header packages build the broker's client-id
# plugin (mosquitto/c/), which `arete broker run` loads.
wanted=(mosquitto mosquitto-clients openssl gcc libc6-dev mosquitto-dev libmosquitto-dev)
if [ "$dev" -eq 1 ]; then
    wanted+=(xvfb podman runc busybox-static prometheus prometheus-node-exporter victoria-metrics chromium iproute2 iptables faketime debootstrap docker-registry)
fi
if ! venv_healthy && ! find_python >/dev/null; then
    # Debian 12's python3 is 3.11; python3-venv brings ensurepip, python3-pip a system pip.
    wanted+=(python3 python3-venv python3-pip)
fi

missing=()
if [ "${ARETE_SKIP_SYSTEM_PACKAGES:-0}" != 1 ]; then
    for package in "${wanted[@]}"; do
        package_installed "$package" || missing+=("$package")
    done
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        die "these packages are missing and there is no apt-get to install them: ${missing[*]}
       Install their equivalents, then run again with ARETE_SKIP_SYSTEM_PACKAGES=1."
    else
        if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
            die "system packages are missing and this is neither root nor has sudo. As root run:
       apt-get update && apt-get install -y ${missing[*]}"
        fi
        say "installing system packages: ${missing[*]}"
        step "updating the apt package lists (apt-get update)" \
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
            -o DPkg::Lock::Timeout=600
        step "installing system packages (apt-get install ${missing[*]})" \
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            -o DPkg::Lock::Timeout=600 "${missing[@]}"
        # On a machine with systemd, Debian starts its own Mosquitto on port 1883 at
        # install. Areté runs its own broker, so stop the one we have just installed.
        if [[ " ${missing[*]} " == *" mosquitto "* ]] && [ -d /run/systemd/system ] &&
            systemctl is-enabled --quiet mosquitto 2>/dev/null; then
            step "disabling Debian's mosquitto.service" as_root systemctl disable --now mosquitto
            say "disabled Debian's mosquitto.service (Areté runs its own broker; 1883 stays free)"
        fi
    fi
fi

# ---------------------------------------------------------------- Python and .venv

if [ -e "$VENV" ] && ! venv_healthy; then
    say "recreating .venv (it is broken or its Python is older than 3.11)"
    case "$VENV" in */.venv) rm -rf -- "$VENV" ;; *) die "refusing to remove $VENV" ;; esac
fi

if [ ! -e "$VENV" ]; then
    python=$(find_python) || die "no Python >= 3.11 with the venv module was found.
       On Debian 12: apt-get install -y python3 python3-venv python3-pip
       Elsewhere: install Python 3.11+ and set ARETE_PYTHON=/path/to/python3.x"
    say "creating .venv with $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
    step "creating the virtual environment .venv" "$python" -m venv "$VENV"
    rm -f "$STAMP"
fi

if [ "$dev" -eq 1 ]; then extras=dev; else extras=server,docker; fi

# What the editable install depends on: the extras, the interpreter, pyproject.toml and
# the set of top-level source folders (setuptools maps each package folder at install).
stamp_for() {
    {
        printf 'extras=%s\n' "$1"
        cat "$VENV/pyvenv.cfg" pyproject.toml
        for dir in */; do
            if compgen -G "${dir}*.py" >/dev/null; then printf '%s\n' "$dir"; fi
        done
    } | sha256sum | cut -d' ' -f1
}

current=$(cat "$STAMP" 2>/dev/null || true)
# A dev install contains the runtime one, so it satisfies a runtime setup too.
if [ "$current" != "$(stamp_for "$extras")" ] && [ "$current" != "$(stamp_for dev)" ]; then
    rm -f "$STAMP"
    say "installing Python packages into .venv: pip install -e '.[$extras]'"
    step "upgrading pip in .venv" "$VENV/bin/python" -m pip install -q --upgrade pip
    step "installing Areté into .venv (pip install -e '.[$extras]')" \
        "$VENV/bin/python" -m pip install -q -e ".[$extras]"
    stamp_for "$extras" >"$STAMP"
fi

# ---------------------------------------------------------------- the broker plugin

# `arete broker run` builds its client-id plugin into the data dir; building it once here
# shows a missing compiler or header now rather than when the broker starts.
step "building the broker's client-id plugin (mosquitto/c/arete_clientid.c)" \
    "$VENV/bin/python" -c 'from mosquitto.plugin import check_build; check_build()'

# ---------------------------------------------------------------- the dashboard

# Mission Control is built with Node >= 20 (Vite 8). Without it the web API still runs
# and its front page says how to build the dashboard.
WEB="$ROOT/dashboards/web"
node_is_recent() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null
}
if [ -f "$WEB/package-lock.json" ]; then
    if node_is_recent; then
        web_stamp=$(cd "$WEB" && cat package-lock.json index.html vite.config.ts tsconfig.json \
            $(find src public -type f | sort) | sha256sum | cut -d' ' -f1)
        if [ ! -d "$WEB/node_modules" ] || [ ! -f "$WEB/dist/index.html" ] ||
            [ "$(cat "$WEB/dist/.arete-stamp" 2>/dev/null)" != "$web_stamp" ]; then
            say "building the dashboard (npm ci && npm run build in dashboards/web)"
            step "installing the dashboard's packages (npm ci)" \
                npm --prefix "$WEB" ci --no-audit --no-fund
            step "building the dashboard (npm run build)" npm --prefix "$WEB" run build
            printf '%s\n' "$web_stamp" >"$WEB/dist/.arete-stamp"
        fi
    elif [ "$dev" -eq 1 ]; then
        die "the dashboard's tests need Node.js >= 20 and npm (https://nodejs.org, or NodeSource's Debian packages)"
    else
        say "Node.js >= 20 not found: the dashboard is not built (the web API runs without it)"
    fi
fi
