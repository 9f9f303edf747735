#!/usr/bin/env bash
# bench/spawn_parallel.sh: how much a second, parallel spawn path would give the full sandbox.
# One superd with c=8, then two independent superd processes (each with its own zygote) loaded
# with c=4 each at the same time; the sum of the two against the one shows what the single
# daemon loses by waiting for its zygote's clone. Run as root after `ninja -C build`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$PWD/build
pids=()
start() {  # start ROOT PORT FIRST_UID
  local root=$1 port=$2 lo=$3
  rm -rf "$root"
  mkdir -p "$root/conf.d"
  printf '[superd]\ndynamic_uid_range = [%s, %s]\nlog_level = "warning"\nruntime_root = "%s/run"\nstate_root = "%s/lib"\ncache_root = "%s/cache"\nlogs_root = "%s/log"\n' \
    "$lo" $((lo + 4999)) "$root" "$root" "$root" "$root" >"$root/superd.toml"
  printf '[socket]\nlisten = ["127.0.0.1:%s"]\nmax_connections = 1024\nbacklog = 1024\n[service]\nexec = ["%s/bench/svc_hello"]\n' \
    "$port" "$BUILD" >"$root/conf.d/hello.toml"
  "$BUILD/superd/superd" serve -c "$root/superd.toml" 2>"$root/log" &
  pids+=($!)
}
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf /srv/superd-bench-par1 /srv/superd-bench-par2
}
trap cleanup EXIT
start /srv/superd-bench-par1 19301 90000
start /srv/superd-bench-par2 19302 95000
sleep 1.5
load() { "$BUILD/bench/loadgen" --target "127.0.0.1:$1" -c "$2" -d "${SECONDS_PER_RUN:-8}" --expect $'hello\n' 2>&1 | tail -1; }
echo "one superd, c=8:"
load 19301 8
echo "two superd processes, c=4 each, at the same time:"
load 19301 4 &
first=$!
load 19302 4
wait "$first"
