#!/usr/bin/env python3
"""bench/faults.py [CASE...]: the fault-injection suite (issue 14, item 3). Each case starts its
own superd on a scratch root under /srv/superd-faults/CASE (UID sub-range of 97000-98999, ports
19340-19379), injects one fault, prints exactly one line of figures with PASS or MISS against the
issue's goal and the foreign CPU during the case (cpu_meter.py: a loaded case is no evidence),
and cleans up what it made (processes by PID, tmpfs mounts, directories). The end is a Markdown
table for the README. Cases: kill9 zygote sigstop reload enospc-run enospc-state emfile pool
memory (default: all, in that order; the resource cases are in faultcases.py). Leftovers are
counted from outside superd: processes of the case's UID range (/proc/*/status), SysV objects
(/proc/sysvipc) and POSIX message queues (an mqueue mount of our own in a private mount
namespace: instances share the host's IPC namespace), and the lease table's non-empty slots.
Run as root from the repository root after `ninja -C build` (bash bench/faults.sh does both;
SUPERD_BUILD names another build directory)."""
import json
import re
import signal
import subprocess
import sys
import time

import benchlib
from cpu_meter import LOADED, Meter
from faultlib import Superd, build, connect, ipc_in_range, procs_in_range, tcp_listening

PORT = 19340  # each case takes PORT + 4*k .. +3


def hello(port, extra=""):
    return benchlib.service_toml(port, "svc_hello") + extra


def loadgen(port, seconds, conc=8):
    """bench/loadgen against svc_hello, in the background; .result() gives its JSON."""
    p = subprocess.Popen([build("bench", "loadgen"), "--target", f"127.0.0.1:{port}", "-c", str(conc), "-d",
                          f"{seconds:.1f}", "--expect", "hello\n", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    p.result = lambda: json.loads(p.communicate(timeout=seconds + 60)[0].strip().splitlines()[-1])
    return p


def served(port, expect=b"hello\n", timeout=5):
    try:
        with connect(port, timeout) as s:
            return s.recv(64) == expect
    except OSError:
        return False


def verdict(ok):
    return "PASS" if ok else "MISS"


# ---------------------------------------------------------------- kill -9 of superd


def case_kill9(n=1000, with_ipc=50):
    """kill -9 of superd with `n` live instances (`with_ipc` of them holding one SysV shm, sem,
    msg and a POSIX mqueue each), then a restart: time to READY, to the first served connection,
    and until no process, IPC object or lease record of the orphans is left."""
    lo, hi, port = 97000, 97000 + n + 199, PORT
    probe = build("tests", "probe")
    d = Superd("kill9", lo, hi, {
        "hold": f'[socket]\nlisten = ["127.0.0.1:{port}"]\nmax_connections = {n}\nbacklog = 1024\n'
                f'[service]\nexec = ["{build("bench", "svc_hold")}"]\n',
        "ipc": f'[socket]\nlisten = ["127.0.0.1:{port + 1}"]\nmax_connections = {with_ipc}\n'
               f'[service]\nexec = ["{probe}", "ipc-hold", "3600"]\n',
        "hello": hello(port + 2)})
    conns = []
    try:
        if d.start() is None:
            return "superd did not start", "", False
        for i in range(n - with_ipc):
            conns.append(connect(port))
        for i in range(with_ipc):
            c = connect(port + 1)
            conns.append(c)
            c.recv(256)  # the probe's line: its objects exist
        benchlib.wait_until(lambda: len(procs_in_range(lo, hi)) >= n, 120, 0.2)
        live, ipc_before = len(set(procs_in_range(lo, hi).values())), len(ipc_in_range(lo, hi))
        old_zygotes = d.zygotes()
        meter = Meter()
        meter.start()
        d.kill()
        t0 = time.time()
        ready = d.start()
        first = None
        if ready is not None and benchlib.wait_until(lambda: served(port + 2, timeout=2), 10, 0.01):
            first = time.time() - t0
        gone = {}
        deadline = t0 + 30
        while time.time() < deadline and len(gone) < 3:
            now = time.time() - t0
            if "procs" not in gone and not procs_in_range(lo, hi):
                gone["procs"] = now
            if "leases" not in gone and d.lease_records() == 0:
                gone["leases"] = now
            if "ipc" not in gone and not ipc_in_range(lo, hi):
                gone["ipc"] = now
            time.sleep(0.05)
        foreign = meter.stop()
        left_p, left_i, left_l = len(procs_in_range(lo, hi)), len(ipc_in_range(lo, hi)), d.lease_records()
        zyg_left = sum(1 for z in old_zygotes if _alive(z))
        m = re.search(r"orphan sweep done in (\d+) ms; (\d+) UIDs not returned", d.log())
        swept = max(gone.values()) if len(gone) == 3 else None
        ok = (ready is not None and ready <= 1 and swept is not None and swept <= 5
              and not (left_p or left_i or left_l or zyg_left))
        fmt = lambda x: "never" if x is None else f"{x:.2f} s"  # noqa: E731
        line = (f"{live} live UIDs ({with_ipc} with IPC: {ipc_before} objects), kill -9, restart: READY {fmt(ready)}, "
                f"first connection served {fmt(first)}; orphans' processes gone {fmt(gone.get('procs'))}, "
                f"IPC {fmt(gone.get('ipc'))}, lease records {fmt(gone.get('leases'))}"
                f"{'; sweep log: ' + m.group(1) + ' ms, ' + m.group(2) + ' not returned' if m else ''}; "
                f"left: {left_p} processes, {left_i} IPC objects, {left_l} lease records, {zyg_left} old zygotes")
        return line, "0 left, READY ≤ 1 s, swept ≤ 5 s", ok, foreign
    finally:
        for c in conns:
            c.close()
        d.close()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------- zygote, SIGSTOP, reloads


def case_zygote(kills=5, conc=8):
    """kill -9 of a zygote of the loaded service, `kills` times 3 s apart, during loadgen at
    c=8: failed connections against the requests the zygotes had in flight (the FAIL lines
    "the zygote died before answering"), and whether the UIDs quarantined for them come back
    within the census period (10 s)."""
    lo, hi, port = 98200, 98299, PORT + 4
    d = Superd("zygote", lo, hi, {"hello": hello(port)})
    try:
        if d.start() is None:
            return "superd did not start", "", False
        meter = Meter()
        meter.start()
        lg = loadgen(port, kills * 3 + 4, conc)
        time.sleep(2)
        def blocked():
            """Quarantined, or blocked as zygote-lost until the census finds them clear."""
            p = d.pool()
            return p.get("quarantined", 0) + p.get("blocked_by", {}).get("zygote-lost", 0)

        # Each kill's unanswered UIDs: how many, and how long until none is blocked any more.
        killed, peak, back_s = 0, 0, []
        for _ in range(kills):
            z = d.zygotes()
            if z:
                subprocess.run(["kill", "-9", str(z[0])])
                killed += 1
            t_kill, seen, back = time.time(), 0, None
            while time.time() - t_kill < (12 if killed == kills else 3):
                n = blocked()
                seen = max(seen, n)
                if n == 0 and seen and back is None:
                    back = time.time() - t_kill
                if killed == kills and back is not None:
                    break
                time.sleep(0.1)
            peak = max(peak, seen)
            if seen:
                back_s.append(back)
        j = lg.result()
        in_flight = d.log().count("the zygote died before answering")
        q_later = blocked()
        released = q_later == 0 and None not in back_s
        foreign = meter.stop()
        restarts = d.log().count("its zygote is gone; starting a new one")
        ok = j["failed"] <= in_flight and released and d.alive()
        line = (f"{killed} zygotes killed during loadgen c={conc}: {j['ok']} ok, {j['failed']} failed, {in_flight} "
                f"requests in flight at the kills, {restarts} zygotes replaced, {j['conns_per_s']:.0f} conns/s, "
                f"p99 {j['p99_ms']:.1f} ms; UIDs blocked (quarantined) at once: up to {peak}, back after "
                f"{'never' if None in back_s or not back_s else f'{max(back_s):.1f} s at most'}; blocked at the end "
                f"{q_later}")
        return line, "failed ≤ in flight, quarantined UIDs back within 10 s", ok, foreign
    finally:
        d.close()


def case_sigstop(conc=8, stop_s=2.0):
    """SIGSTOP of superd for 2 s during loadgen at c=8: the accept queue while stopped, the time
    it takes to drain after SIGCONT, loadgen's failures, and that superd still serves."""
    lo, hi, port = 98300, 98399, PORT + 8
    d = Superd("sigstop", lo, hi, {"hello": hello(port)})
    try:
        if d.start() is None:
            return "superd did not start", "", False
        meter = Meter()
        meter.start()
        lg = loadgen(port, 8, conc)
        time.sleep(2)
        d.kill(signal.SIGSTOP)
        t0, peak = time.time(), 0
        while time.time() - t0 < stop_s:
            peak = max(peak, tcp_listening(port) or 0)
            time.sleep(0.05)
        d.kill(signal.SIGCONT)
        t1 = time.time()
        drained = benchlib.wait_until(lambda: (tcp_listening(port) or 0) == 0, 5, 0.005)
        drain = time.time() - t1
        j = lg.result()
        foreign = meter.stop()
        after = served(port)
        ok = d.alive() and after and drained and drain <= 1 and j["failed"] == 0
        line = (f"stopped {stop_s:.0f} s during loadgen c={conc}: accept queue peak {peak}, drained "
                f"{drain * 1000:.0f} ms after SIGCONT; {j['ok']} ok, {j['failed']} failed, max latency "
                f"{j['max_ms']:.0f} ms; superd alive {d.alive()}, serves after: {after}")
        return line, "no crash, 0 failed, backlog drained ≤ 1 s", ok, foreign
    finally:
        d.close()


def case_reload(reloads=20, conc=8):
    """`superd reload` 20 times, about one a second, during loadgen at c=8; every other reload
    changes the loaded service (its environment), so it is replaced under load, not only
    re-read. One long-lived svc_hold instance is connected throughout."""
    lo, hi, port = 98400, 98499, PORT + 12
    d = Superd("reload", lo, hi, {"hello": hello(port), "hold": benchlib.service_toml(port + 1, "svc_hold")})
    try:
        if d.start() is None:
            return "superd did not start", "", False
        hold = connect(port + 1)
        hold_ok = hold.recv(3) == b"up\n"
        meter = Meter()
        meter.start()
        lg = loadgen(port, reloads * 1.1 + 4, conc)
        time.sleep(2)
        errors = []
        for i in range(reloads):
            if i % 2:
                d.write_service("hello", hello(port, f'environment = ["FAULTS_GEN={i}"]\n'))
            r = d.cli("reload")
            if r.returncode != 0:
                errors.append((r.stderr or r.stdout).strip()[:200])
            time.sleep(1)
        j = lg.result()
        foreign = meter.stop()
        hold_ok = hold_ok and "EXIT hold" not in d.log()  # the long-lived instance survived every reload
        hold.close()
        killed = len(re.findall(r"EXIT .* signal=", d.log()))
        ok = j["failed"] == 0 and not errors and d.alive() and hold_ok
        line = (f"{reloads} reloads ({reloads // 2} replacing the service) during loadgen c={conc}: {j['ok']} ok, "
                f"{j['failed']} failed, {j['conns_per_s']:.0f} conns/s, p99 {j['p99_ms']:.1f} ms, max "
                f"{j['max_ms']:.0f} ms; reloads refused {len(errors)}{' ' + repr(errors[:1]) if errors else ''}; "
                f"instances killed {killed}; long-lived instance survived: {hold_ok}")
        return line, "0 failed", ok, foreign
    finally:
        d.close()


def main():
    import faultcases
    cases = {"kill9": case_kill9, "zygote": case_zygote, "sigstop": case_sigstop, "reload": case_reload,
             **faultcases.CASES}
    chosen = sys.argv[1:] or list(cases)
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        sys.exit(f"unknown case {unknown}; cases: {' '.join(cases)}")
    rows = []
    for name in chosen:
        t0 = time.time()
        try:
            r = cases[name]()
            line, goal, ok = r[:3]
            foreign = r[3] if len(r) > 3 else None
        except Exception as e:  # noqa: BLE001 - one case's failure is its line, the others run
            line, goal, ok, foreign = f"ERROR {type(e).__name__}: {e}", "", False, None
        fc = "n/a" if foreign is None else f"{foreign:.2f}{' (LOADED: no evidence)' if foreign > LOADED else ''}"
        print(f"{name}: {line}; goal: {goal}: {verdict(ok)}; foreign CPU {fc} ({time.time() - t0:.0f} s)",
              flush=True)
        rows.append((name, line, goal, verdict(ok), fc))
    print("\n| case | figures | goal | result | foreign CPU |\n|---|---|---|---|---:|")
    for row in rows:
        print("| " + " | ".join(x.replace("|", "\\|") for x in row) + " |")
    sys.exit(0 if all(r[3] == "PASS" for r in rows) else 1)


if __name__ == "__main__":
    main()
