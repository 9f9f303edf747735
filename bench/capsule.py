#!/usr/bin/env python3
"""bench/capsule.py [ROUNDS] [SECONDS] [CONCURRENCY] [STARTS]: capsules measured from the host.
- start to ready: `superd capsule start` STARTS times (default 10), the daemon's ready_ms (clone
  to the capsule's READY) and the command's wall time;
- stop to nothing left: `superd capsule stop` until no process of the capsule's block remains;
- connection rate: bench's svc_hello (full default sandbox, a fresh UID per connection) on the
  host and the same service inside a capsule, under one superd, in interleaved rounds of
  bench/loadgen (default 5 rounds of 8 s at c=8); the ratio capsule/host (goal >= 0.9).
Every round records the foreign CPU (bench/cpu_meter.py); loaded rounds are left out. Run as root
from the repository root after `ninja -C build`."""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

from benchlib import BUILD, SUPERD, interleaved, loadgen_round, service_toml, superd_cli, write_superd_toml
from cpu_meter import LOADED

SCRATCH = "/srv/superd-bench-capsule"
HOST_PORT, CAPSULE_PORT = 19210, 19211
FIRST, LAST = 0x72000000, 0x7207FFFF


def cli(*args):
    return superd_cli(SCRATCH, *args, timeout=60)


def block_alive(block):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("Uid:") and block <= int(line.split()[1]) < block + 65536:
                            return True
            except OSError:
                pass
    return False


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} never answered")


def main():
    rounds, seconds, conc, starts = (int(x) for x in (sys.argv[1:] + ["5", "8", "8", "10"][len(sys.argv) - 1:])[:4])
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH + "/conf.d")
    write_superd_toml(SCRATCH, 90000, 99999, f"capsule_uid_range = [{FIRST}, {LAST}]")
    with open(SCRATCH + "/conf.d/hello.toml", "w") as f:
        f.write(service_toml(HOST_PORT, "svc_hello"))
    conf = f"{SCRATCH}/lib/capsules/bench/.config/superd"
    os.makedirs(conf)
    with open(conf + "/hello.toml", "w") as f:
        f.write(service_toml(CAPSULE_PORT, "svc_hello"))
    p = subprocess.Popen([SUPERD, "serve", "-c", SCRATCH + "/superd.toml"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_port(HOST_PORT)
        ready, wall, stop = [], [], []
        for i in range(starts):
            t0 = time.time()
            r = cli("capsule", "start", "bench")
            if r.returncode != 0:
                sys.exit(f"capsule start: {r.stderr}")
            wall.append(1000 * (time.time() - t0))
            ready.append(float(r.stdout.split("ready in ")[1].split()[0]))
            block = int(r.stdout.split("UIDs from ")[1].split(",")[0])
            if i == starts - 1:
                break
            t0 = time.time()
            if cli("capsule", "stop", "bench").returncode != 0:
                sys.exit("capsule stop failed")
            while block_alive(block):
                time.sleep(0.001)
            stop.append(1000 * (time.time() - t0))
        print(f"capsule start to ready: median {statistics.median(ready):.1f} ms (clone to READY), "
              f"{statistics.median(wall):.1f} ms for the command; stop to nothing left: "
              f"median {statistics.median(stop):.1f} ms over {len(stop)} stops", flush=True)
        wait_port(CAPSULE_PORT)
        time.sleep(0.5)
        clean, m = interleaved(rounds, [(name, lambda p=port: loadgen_round(p, seconds, conc))
                                        for name, port in (("host", HOST_PORT), ("capsule", CAPSULE_PORT))], LOADED)
        med = {k: v["conns_per_s"] for k, v in m.items()}
        p99 = {k: v["p99_ms"] for k, v in m.items()}
        print(f"median conns/s at c={conc} over {len(clean['host'])} clean rounds of {rounds}: host {med['host']:.0f}, "
              f"capsule {med['capsule']:.0f}, capsule/host {med['capsule'] / med['host']:.2f}; p99 ms host "
              f"{p99['host']:.2f}, capsule {p99['capsule']:.2f}")
        cli("capsule", "stop", "bench")
    finally:
        p.terminate()
        p.wait(timeout=60)
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
