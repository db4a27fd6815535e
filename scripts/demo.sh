#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, and runs the main job end to
# end on loopback with the embedded SQLite store, printing each phase.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ct_install_deps
dir=${CT_DEMO_BUILD:-build-demo}
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" --buildtype=release -Dtests=false >/dev/null
fi
ninja -C "$dir" >/dev/null
exec "$dir/examples/demo" "$@"
