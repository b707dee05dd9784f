#!/usr/bin/env bash
# Install what is missing (scripts/setup.sh), then run the whole stack on embedded
# defaults: `arete up` (today the broker and a local agent for this machine). It prints
# how to watch them; Ctrl-C stops everything.
#
#   scripts/up.sh                      data in ./data (the repository's), MQTT on 1883
#   scripts/up.sh --mqtt-port 11883    any `arete up` option is passed through
#   ARETE_DATA_DIR=/srv/arete scripts/up.sh    or --data-dir /srv/arete
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

"$ROOT/scripts/setup.sh"

# `arete up` reads ARETE_DATA_DIR; an explicit --data-dir still wins over it.
export ARETE_DATA_DIR="${ARETE_DATA_DIR:-$ROOT/data}"
exec "$ROOT/.venv/bin/arete" up "$@"
