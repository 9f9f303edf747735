#!/usr/bin/env python3
"""bench/ab.py OLD_SUPERD NEW_SUPERD [ROUNDS] [SECONDS] [CONCURRENCY]: the same service (bench's
svc_hello, full default sandbox, a fresh UID per connection) under two superd binaries, in
interleaved rounds of bench/loadgen, to tell a change's cost from this VM's noise. Prints one
line per round and the medians with their ratio. Run as root from the repository root after
`ninja -C build` (loadgen and svc_hello come from build/bench). Build the old binary from a
worktree, e.g. `git worktree add /srv/old HEAD~5 && meson setup /srv/old/b /srv/old && ninja -C
/srv/old/b superd/superd`. AB_OLD_EXTRA / AB_NEW_EXTRA: [service] lines added to that side's
service (the same binary twice with and without a setting measures the setting).
Every round records the foreign CPU (bench/cpu_meter.py); loaded rounds are left out."""
import os
import shutil
import socket
import subprocess
import sys
import time

from benchlib import interleaved, loadgen_round, write_superd_toml
from cpu_meter import LOADED

BUILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build")
PORT = 19101
SCRATCH = "/srv/superd-bench-ab"


def run_one(binary, seconds, conc, extra=""):
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH + "/conf.d")
    write_superd_toml(SCRATCH, 90000, 99999)
    with open(SCRATCH + "/conf.d/hello.toml", "w") as f:
        f.write(f"""[socket]
listen = ["127.0.0.1:{PORT}"]
max_connections = 1024
backlog = 1024
[service]
exec = ["{BUILD}/bench/svc_hello"]
{extra}
""")
    p = subprocess.Popen([binary, "serve", "-c", SCRATCH + "/superd.toml"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)
        j = loadgen_round(PORT, seconds, conc)
        return j
    finally:
        p.terminate()
        p.wait(timeout=60)
        shutil.rmtree(SCRATCH, ignore_errors=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    old, new = sys.argv[1], sys.argv[2]
    rounds, seconds, conc = (int(x) for x in (sys.argv[3:] + ["5", "8", "8"][len(sys.argv) - 3:])[:3])
    clean, m = interleaved(rounds, [(name, lambda b=binary, n=name: run_one(b, seconds, conc,
                                                                         os.environ.get(f"AB_{n.upper()}_EXTRA", "")))
                                    for name, binary in (("old", old), ("new", new))], LOADED)
    med = {k: v["conns_per_s"] for k, v in m.items()}
    p99 = {k: v["p99_ms"] for k, v in m.items()}
    cpu = {k: v["cpu_us_per_conn"] for k, v in m.items()}
    print(f"median conns/s at c={conc} over {len(clean['old'])} clean rounds of {rounds} (foreign CPU <= {LOADED}): "
          f"old {med['old']:.0f}, new {med['new']:.0f}, new/old {med['new'] / med['old']:.2f}; "
          f"p99 ms old {p99['old']:.2f}, new {p99['new']:.2f}; CPU per connection old {cpu['old']:.0f} us, "
          f"new {cpu['new']:.0f} us, new/old {cpu['new'] / cpu['old']:.3f}")

if __name__ == "__main__":
    main()
