#!/usr/bin/env python3
"""bench/scale: superd at scale, with its own accounting of what is left afterwards.

1. 4,000 live instances of a sleeping service (svc_hold) at once: superd's RSS, and the
   latency of new connections to another service (hello, full sandbox) while they live,
   against the same measurement before.
2. After they end: every UID back (empty lease table), no process, IPC object or file of the
   range left.
3. A soak of N connections (default 100,000; --short 20,000) through the full sandbox:
   0 failed; superd's fd count and RSS before and after; the same leak checks.
Throughout, superd's RSS and fd count are sampled twice a second into "series" (with the phase
of each sample), which bench/plot.py draws.
Run as root: `bash bench/scale.sh [--short]` (writes bench/scale-latest.json and its plot)."""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
SCRATCH = f"/srv/superd-bench/scale-{os.getpid()}"
LO, HI = 100000, 109999
HOLD_PORT, HELLO_PORT = 19101, 19102
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import ipc_owned, uids_of_processes  # noqa: E402
from benchlib import wait_until, write_superd_toml  # noqa: E402


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def leases():
    try:
        with open(f"{SCRATCH}/run/superd/dynamic-uid/leases", "rb") as f:
            data = f.read()
    except OSError:
        return -1
    return sum(1 for off in range(64, len(data) - 63, 64) if struct.unpack_from("<I", data, off)[0])


def leftovers():
    files = []
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue"):
        if not os.path.isdir(d):
            continue
        for n in os.listdir(d):
            st = os.lstat(os.path.join(d, n))
            if LO <= st.st_uid <= HI:
                files.append(os.path.join(d, n))
    return {"processes": len(uids_of_processes(LO, HI)), "ipc": len(ipc_owned(LO, HI)), "files": len(files)}


class Sampler(threading.Thread):
    """superd's RSS and fd count every `period` seconds, each sample tagged with the phase."""

    def __init__(self, pid, period=0.5):
        super().__init__(daemon=True)
        self.pid, self.period, self.phase = pid, period, "idle"
        self.samples, self.stop = [], threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append({"t": round(time.monotonic() - self.t0, 2), "phase": self.phase,
                                     "rss_kb": rss_kb(self.pid), "fds": fd_count(self.pid)})
            except OSError:
                return  # superd is gone
            self.stop.wait(self.period)


def load(port, conc, **kw):
    args = [f"{BUILD}/bench/loadgen", "--target", f"127.0.0.1:{port}", "-c", str(conc), "--expect", "hello\\n",
            "--json", "--timeout-ms", "20000"]
    if "n" in kw:
        args += ["-n", str(kw["n"]), "--max-seconds", "1200"]
    else:
        args += ["-d", str(kw["d"])]
    out = subprocess.run(args, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--instances", type=int, default=4000)
    ap.add_argument("--soak", type=int, default=0)
    ap.add_argument("--out", help="also write the report here (JSON)")
    args = ap.parse_args()
    soak = args.soak or (20000 if args.short else 100000)
    n_live = args.instances
    if os.geteuid() != 0:
        sys.exit("scale: run as root")
    # superd inherits this limit: it needs two fds per live instance, this script one.
    lim = 3 * n_live + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
    os.makedirs(SCRATCH + "/conf.d")
    os.chmod(os.path.dirname(SCRATCH), 0o755)
    os.chmod(SCRATCH, 0o755)
    for b in ("svc_hold", "svc_hello"):
        shutil.copy(f"{BUILD}/bench/{b}", f"{SCRATCH}/{b}")
        os.chmod(f"{SCRATCH}/{b}", 0o755)
    write_superd_toml(SCRATCH, LO, HI)
    with open(SCRATCH + "/conf.d/hold.toml", "w") as f:
        f.write(f'[socket]\nlisten = ["127.0.0.1:{HOLD_PORT}"]\nmax_connections = {n_live + 100}\nbacklog = 4096\n'
                f'[service]\nexec = ["{SCRATCH}/svc_hold"]\n')
    with open(SCRATCH + "/conf.d/hello.toml", "w") as f:
        f.write(f'[socket]\nlisten = ["127.0.0.1:{HELLO_PORT}"]\nmax_connections = 1024\nbacklog = 1024\n'
                f'[service]\nexec = ["{SCRATCH}/svc_hello"]\n')
    r, w = os.pipe()
    log = open(SCRATCH + "/superd.log", "wb")
    sd = subprocess.Popen([f"{BUILD}/superd/superd", "serve", "-c", SCRATCH + "/superd.toml", "--ready-fd", str(w)],
                          pass_fds=[w], stdout=log, stderr=log)
    os.close(w)
    if os.read(r, 16) != b"READY\n":
        sys.exit("scale: superd did not start; see " + SCRATCH + "/superd.log")
    os.close(r)
    report = {}
    socks = []
    sampler = Sampler(sd.pid)
    sampler.start()
    try:
        report["rss_idle_kb"] = rss_kb(sd.pid)
        report["fds_idle"] = fd_count(sd.pid)
        sampler.phase = "baseline"
        base = load(HELLO_PORT, 1, d=3)
        sampler.phase = "start live"
        t0 = time.time()
        for i in range(n_live):
            s = socket.create_connection(("127.0.0.1", HOLD_PORT), timeout=30)
            socks.append(s)
        for i, s in enumerate(socks):  # every instance is up once it has said so
            s.settimeout(30)
            got = s.recv(3)
            if got != b"up\n":
                raise SystemExit(f"scale: instance {i} did not come up: {got!r}")
        report["live_instances"] = n_live
        report["start_all_s"] = round(time.time() - t0, 2)
        report["rss_live_kb"] = rss_kb(sd.pid)
        report["fds_live"] = fd_count(sd.pid)
        report["live_uids"] = len(set(uids_of_processes(LO, HI).values()))
        sampler.phase = "live"
        under = load(HELLO_PORT, 1, d=3)
        report["hello_idle"] = {k: base[k] for k in ("conns_per_s", "p50_ms", "p99_ms")}
        report["hello_with_live"] = {k: under[k] for k in ("conns_per_s", "p50_ms", "p99_ms")}
        sampler.phase = "drain"
        t1 = time.time()
        for s in socks:
            s.close()
        socks = []
        ok = wait_until(lambda: leases() == 0 and not uids_of_processes(LO, HI), 120, 0.2)
        report["drain_s"] = round(time.time() - t1, 2)
        report["after_live"] = {"leases": leases(), **leftovers(), "all_back": ok}
        rss0, fds0 = rss_kb(sd.pid), fd_count(sd.pid)
        sampler.phase = "soak"
        t2 = time.time()
        s = load(HELLO_PORT, 8, n=soak)
        wait_until(lambda: leases() == 0, 60, 0.2)
        report["soak"] = {"connections": soak, "ok": s["ok"], "failed": s["failed"], "conns_per_s": s["conns_per_s"],
                          "seconds": round(time.time() - t2, 1), "rss_before_kb": rss0, "rss_after_kb": rss_kb(sd.pid),
                          "fds_before": fds0, "fds_after": fd_count(sd.pid), "leases_after": leases(),
                          **leftovers()}
    except BaseException:
        with open(SCRATCH + "/superd.log", errors="replace") as f:
            print("superd log (tail):\n" + "".join(f.readlines()[-15:]), file=sys.stderr)
        raise
    finally:
        for s in socks:
            s.close()
        sampler.phase = "stop"
        sd.send_signal(signal.SIGTERM)
        report["superd_exit"] = sd.wait(timeout=120)
        sampler.stop.set()
        sampler.join(timeout=5)
        report["series"] = sampler.samples
        report["after_stop"] = {"leases": leases(), **leftovers()}
        shutil.rmtree(SCRATCH, ignore_errors=True)
    # The samples go to --out only: hundreds of them would bury the figures on the terminal.
    print(json.dumps({k: v for k, v in report.items() if k != "series"}, indent=1))
    print(f"scale: {len(report.get('series', []))} RSS/fd samples" + (f", all in {args.out}" if args.out else ""))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
