#!/usr/bin/env bash
# bench/scale.sh [--short]: 4,000 live instances and a connection soak; see bench/scale.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
ninja -C build
exec python3 bench/scale.py "$@"
