#!/usr/bin/env bash
# bench/compare.sh [--short|--full]: installs the peers (xinetd, ucspi-tcp) and superd's own
# dependencies from Debian's archive, builds, and runs bench/compare.py; writes bench/RESULTS.md,
# bench/compare-latest.json and its plot bench/compare.png / .svg (bench/plot.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps xinetd ucspi-tcp python3-matplotlib
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
ninja -C build
# Debian starts xinetd as a system service when it is installed; the bench runs its own.
python3 bench/compare.py "$@"
# Debian's matplotlib is seen by Debian's python3, not necessarily by the python3 on PATH.
/usr/bin/python3 bench/plot.py compare bench/compare-latest.json bench/compare
