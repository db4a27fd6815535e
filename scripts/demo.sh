#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, and runs the main job end to
# end on loopback with the embedded SQLite store: a beacon, a registered
# cluster, a bridge and an operator as separate processes. Prints each phase
# as it happens with its time since the start, then sends a request through
# the operational session and shows the answer, then restarts the operator
# to show the attested re-bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ct_install_deps
dir=${CT_DEMO_BUILD:-build-demo}
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" --buildtype=release -Dtests=false >/dev/null
fi
ninja -C "$dir" >/dev/null
exec scripts/flow.sh "$dir"
