#!/usr/bin/env bash
# bench/faults.sh [CASE...]: the fault-injection suite (see bench/faults.py): builds what it runs
# if needed (in $SUPERD_BUILD, default build/), then runs the cases given, or all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SUPERD_BUILD:-build}
if [ ! -f "$build/build.ninja" ]; then
  bash .ci/install-deps
  meson setup "$build" >/dev/null
fi
ninja -C "$build" superd/superd bench/loadgen bench/svc_hello bench/svc_hold tests/probe
SUPERD_BUILD=$(realpath "$build") exec python3 bench/faults.py "$@"
