#!/usr/bin/env bash
# bench/scale.sh [--short]: 4,000 live instances and a connection soak; see bench/scale.py.
# Writes bench/scale-latest.json and its plot bench/scale.png / .svg (bench/plot.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps python3-matplotlib
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
ninja -C build
python3 bench/scale.py --out bench/scale-latest.json "$@"
/usr/bin/python3 bench/plot.py scale bench/scale-latest.json bench/scale
