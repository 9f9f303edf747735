#!/usr/bin/env bash
# bench/compare.sh [--short|--full]: installs the peers (xinetd, ucspi-tcp) and superd's own
# dependencies from Debian's archive, builds, and runs bench/compare.py; writes bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps xinetd ucspi-tcp
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
ninja -C build
# Debian starts xinetd as a system service when it is installed; the bench runs its own.
exec python3 bench/compare.py "$@"
