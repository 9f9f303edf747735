#!/usr/bin/env python3
"""bench/upgrade.py [UPGRADES] [CONCURRENCY]: zero-downtime upgrades under load (issue 12, item 6).
One superd serves bench's svc_hello (full default sandbox, a fresh UID per connection) and
svc_hold. A long-lived svc_hold instance connects first; then bench/loadgen runs at c=8 while
`superd upgrade` runs UPGRADES times (default 20), about one a second. Reported: loadgen's failed
connections (goal 0), each upgrade's time from request to the new image's READY and how long the
listeners were paused, instances killed (EXIT lines with a signal: goal 0), whether the long-lived
instance survived all of them (same PID, still answering) and was then reaped and cleaned by the
last image, and what was left after superd stopped (processes of the range, lease records: goal
0). The foreign CPU of the run is recorded; a loaded run is no evidence. Run as root from the
repository root after `ninja -C build`."""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

from benchlib import BUILD, SUPERD, service_toml, superd_cli, wait_until, write_superd_toml
from cpu_meter import LOADED, Meter

SCRATCH = "/srv/superd-bench-upgrade"
HELLO, HOLD = 19220, 19221
LO, HI = 90000, 99999


def cli(*args):
    return superd_cli(SCRATCH, *args)


def processes_in_range():
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("Uid:") and LO <= int(line.split()[1]) <= HI:
                            n += 1
            except OSError:
                pass
    return n


def lease_records():
    try:
        with open(SCRATCH + "/run/superd/dynamic-uid/leases", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    return sum(1 for off in range(64, len(data) - 63, 64) if int.from_bytes(data[off:off + 4], "little"))


def main():
    upgrades, conc = (int(x) for x in (sys.argv[1:] + ["20", "8"][len(sys.argv) - 1:])[:2])
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH + "/conf.d")
    write_superd_toml(SCRATCH, LO, HI)
    with open(SCRATCH + "/superd.toml") as f:
        text = f.read().replace('log_level = "warning"', 'log_level = "info"')
    with open(SCRATCH + "/superd.toml", "w") as f:
        f.write(text)
    for name, port, prog in (("hello", HELLO, "svc_hello"), ("hold", HOLD, "svc_hold")):
        with open(f"{SCRATCH}/conf.d/{name}.toml", "w") as f:
            f.write(service_toml(port, prog))
    log_path = SCRATCH + "/superd.log"
    logf = open(log_path, "wb")
    p = subprocess.Popen([SUPERD, "serve", "-c", SCRATCH + "/superd.toml"], stdout=logf, stderr=logf)
    log = lambda: open(log_path, errors="replace").read()  # noqa: E731
    try:
        if not wait_until(lambda: "ready:" in log(), 15):
            sys.exit("superd did not start:\n" + log())
        hold = socket.create_connection(("127.0.0.1", HOLD), timeout=10)
        if hold.recv(3) != b"up\n":
            sys.exit("svc_hold did not answer")
        wait_until(lambda: "START hold" in log(), 5)
        hold_pid = int(re.search(r"START hold .* pid=(\d+)", log()).group(1))
        seconds = upgrades * 1.2 + 4
        meter = Meter()
        meter.start()
        lg = subprocess.Popen([f"{BUILD}/bench/loadgen", "--target", f"127.0.0.1:{HELLO}", "-c", str(conc), "-d",
                               f"{seconds:.0f}", "--expect", "hello\n", "--json"], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        times, paused, errors = [], [], []
        for _ in range(upgrades):
            r = cli("upgrade")
            m = re.search(r", ([\d.]+) ms \(listeners paused ([\d.]+) ms\)", r.stdout)
            if r.returncode != 0 or not m:
                errors.append(r.stderr.strip() or r.stdout.strip())
            else:
                times.append(float(m.group(1)))
                paused.append(float(m.group(2)))
            time.sleep(1)
        out, _ = lg.communicate(timeout=seconds + 60)
        foreign = meter.stop()
        j = json.loads(out.strip().splitlines()[-1])
        alive = os.path.exists(f"/proc/{hold_pid}") and p.pid == int(json.loads(cli("status", "--json").stdout)["pid"])
        hold.sendall(b"still there?\n")
        hold.close()
        reaped = wait_until(lambda: re.search(rf"EXIT hold .* pid={hold_pid} .*status=0", log()), 10)
        killed = len(re.findall(r"EXIT .* signal=", log()))
        p.terminate()
        p.wait(timeout=60)
        left_procs, left_leases = processes_in_range(), lease_records()
        print(f"{upgrades} upgrades during loadgen c={conc} for {j['duration_s']:.0f} s: {j['ok']} connections, "
              f"{j['failed']} failed, {j['conns_per_s']:.0f} conns/s, p99 {j['p99_ms']:.2f} ms, max {j['max_ms']:.1f} ms; "
              f"foreign CPU {foreign:.2f}{' (LOADED: no evidence)' if foreign > LOADED else ''}")
        if times:
            print(f"upgrade, request to new image ready: median {statistics.median(times):.1f} ms, max "
                  f"{max(times):.1f} ms; listeners paused: median {statistics.median(paused):.1f} ms, max "
                  f"{max(paused):.1f} ms")
        print(f"upgrades failed: {len(errors)}{' ' + repr(errors[:3]) if errors else ''}; instances killed: {killed}; "
              f"long-lived instance pid {hold_pid} survived all: {alive}, then reaped with status 0: {bool(reaped)}; "
              f"left after stop: {left_procs} processes, {left_leases} lease records")
        ok = not errors and j["failed"] == 0 and killed == 0 and alive and reaped and not left_procs and not left_leases
        sys.exit(0 if ok else 1)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
