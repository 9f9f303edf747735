#!/usr/bin/env python3
"""bench/orphans.py [N]: how fast a restarted superd serves and sweeps after `kill -9` with N live
instances (default 1,000). Starts superd with a sleeping service, opens N connections, waits for
N live instances, kills superd with SIGKILL, starts it again and measures: the time to READY
(--ready-fd), the time until a new connection is served, and the time until every orphaned UID
has no process left and the log says the sweep is done. Records the foreign CPU. Run as root
from the repository root after `ninja -C build`."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from cpu_meter import Meter

BUILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build")
SCRATCH = "/srv/superd-bench-orphans"
PORT, PORT2 = 19201, 19202
LO = 95000


def uids_alive(lo, hi):
    n = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        u = int(line.split()[1])
                        if lo <= u <= hi:
                            n.add(u)
        except OSError:
            pass
    return n


def start(log):
    r, w = os.pipe()
    p = subprocess.Popen([f"{BUILD}/superd/superd", "serve", "-c", SCRATCH + "/superd.toml", "--ready-fd", str(w)],
                         pass_fds=[w], stdout=log, stderr=log)
    os.close(w)
    t0 = time.time()
    data = os.read(r, 16)
    os.close(r)
    if data != b"READY\n":
        sys.exit(f"superd did not become ready: {data!r}")
    return p, time.time() - t0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    hi = LO + n + 99
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH + "/conf.d")
    shutil.copy(f"{BUILD}/bench/svc_hello", SCRATCH + "/svc_hello")
    with open(SCRATCH + "/superd.toml", "w") as f:
        f.write(f'[superd]\ndynamic_uid_range = [{LO}, {hi}]\nlog_level = "info"\nruntime_root = "{SCRATCH}/run"\n'
                f'state_root = "{SCRATCH}/lib"\ncache_root = "{SCRATCH}/cache"\nlogs_root = "{SCRATCH}/log"\n')
    with open(SCRATCH + "/conf.d/hold.toml", "w") as f:
        f.write(f'[socket]\nlisten = ["127.0.0.1:{PORT}"]\nmax_connections = {n}\nbacklog = 1024\n'
                f'[service]\nexec = ["{BUILD}/bench/svc_hold"]\n')
    with open(SCRATCH + "/conf.d/hello.toml", "w") as f:
        f.write(f'[socket]\nlisten = ["127.0.0.1:{PORT2}"]\n[service]\nexec = ["{SCRATCH}/svc_hello"]\n')
    for d in (os.path.dirname(SCRATCH), SCRATCH):
        os.chmod(d, 0o755)
    log = open(SCRATCH + "/superd.log", "ab")
    p, _ = start(log)
    conns = []
    try:
        for _ in range(n):
            conns.append(socket.create_connection(("127.0.0.1", PORT)))
        deadline = time.time() + 120
        while len(uids_alive(LO, hi)) < n and time.time() < deadline:
            time.sleep(0.1)
        live = len(uids_alive(LO, hi))
        p.send_signal(signal.SIGKILL)
        p.wait()
        meter = Meter()
        meter.start()
        t0 = time.time()
        p, ready = start(log)
        with socket.create_connection(("127.0.0.1", PORT2), timeout=10) as s:
            served_ok = s.recv(64) == b"hello\n"
        served = time.time() - t0
        while uids_alive(LO, hi) and time.time() - t0 < 60:
            time.sleep(0.01)
        gone = time.time() - t0
        while time.time() - t0 < 60:
            with open(SCRATCH + "/superd.log", errors="replace") as f:
                m = re.search(r"orphan sweep done in (\d+) ms; (\d+) UIDs not returned", f.read())
            if m:
                break
            time.sleep(0.01)
        foreign = meter.stop()
        print(json.dumps({"orphans": live, "ready_s": round(ready, 3), "first_connection_served_s": round(served, 3),
                          "served_ok": served_ok, "processes_gone_s": round(gone, 3),
                          "sweep_done_ms": int(m.group(1)) if m else None,
                          "not_returned": int(m.group(2)) if m else None, "foreign_cpu": round(foreign, 2)}))
    finally:
        for c in conns:
            c.close()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        log.close()
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
