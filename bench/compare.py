#!/usr/bin/env python3
"""bench/compare: superd side by side with its peers, in one run, on loopback.

Systems, all serving the same tiny static service (svc_hello: writes "hello\\n", exits) with
the connection on fd 0/1:
  rawspawn      the ceiling: accept + vfork + exec, no UID change, no sandbox
  superd        full default sandbox and a fresh dynamic UID per connection
  superd-nosb   `sandbox = false`: fresh dynamic UID only
  superd-state  as superd, with a state directory (the shared group, mode 2770)
  superd-idmap  as superd-state, with state_directory_idmap = true (an idmapped mount per instance)
  xinetd        wait = no, user = nobody; cps/instances/per_source raised so it never throttles
  tcpserver     ucspi-tcp, -H -R -l 0 (no DNS/ident), -c 1000, -b 1024, runs as nobody
  rawspawn-nolibc, superd-nolibc   the same two with svc_hello_nolibc, a libc-free build of the
                service: without glibc's start-up, the servers' fixed costs weigh 3-4x more
                (their ratio is to rawspawn-nolibc)
A window whose foreign CPU (others' use of the machine) is over the limit is run again once; a
round that stays loaded is marked and left out of the medians.
Rounds are interleaved (every system at every concurrency once per round, in rotating order);
each figure is the median over rounds. Ratios are against rawspawn and xinetd of the same run.
Run as root through `bash bench/compare.sh [--short|--full]` (installs xinetd and ucspi-tcp)."""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from cpu_meter import LOADED, Meter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
SCRATCH = f"/srv/superd-bench/compare-{os.getpid()}"
PORTS = {"rawspawn": 19001, "superd": 19002, "superd-nosb": 19003, "xinetd": 19004, "tcpserver": 19005,
         "rawspawn-nolibc": 19006, "superd-nolibc": 19007, "superd-state": 19008, "superd-idmap": 19009}


def baseline(name):
    """The raw spawner that serves the same binary: what `name` is compared with."""
    return "rawspawn-nolibc" if name.endswith("-nolibc") else "rawspawn"
UID_RANGE = (90000, 99999)


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(16)
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_all(svc, wanted, nolibc):
    procs = {}
    os.makedirs(SCRATCH + "/conf.d")
    logs = open(SCRATCH + "/servers.log", "wb")
    if "rawspawn" in wanted:
        procs["rawspawn"] = subprocess.Popen([f"{BUILD}/bench/rawspawn", "--backlog", "1024",
                                              f"127.0.0.1:{PORTS['rawspawn']}", svc],
                                             stdout=subprocess.DEVNULL, stderr=logs)
    with open(SCRATCH + "/superd.toml", "w") as f:
        f.write(f"""[superd]
dynamic_uid_range = [{UID_RANGE[0]}, {UID_RANGE[1]}]
log_level = "warning"
runtime_root = "{SCRATCH}/run"
state_root = "{SCRATCH}/lib"
cache_root = "{SCRATCH}/cache"
logs_root = "{SCRATCH}/log"
""")
    if nolibc and "rawspawn-nolibc" in wanted:
        procs["rawspawn-nolibc"] = subprocess.Popen([f"{BUILD}/bench/rawspawn", "--backlog", "1024",
                                                     f"127.0.0.1:{PORTS['rawspawn-nolibc']}", nolibc],
                                                    stdout=subprocess.DEVNULL, stderr=logs)
    services = [("superd", svc, ""), ("superd-nosb", svc, "sandbox = false\n"),
                ("superd-state", svc, 'state_directory = "bench"\n'),
                ("superd-idmap", svc, 'state_directory = "bench-idmap"\nstate_directory_idmap = true\n')]
    if nolibc:
        services.append(("superd-nolibc", nolibc, ""))
    for name, program, extra in services:
        with open(f"{SCRATCH}/conf.d/{name}.toml", "w") as f:
            f.write(f"""[socket]
listen = ["127.0.0.1:{PORTS[name]}"]
max_connections = 1024
backlog = 1024
[service]
exec = ["{program}"]
{extra}""")
    procs["superd"] = subprocess.Popen([f"{BUILD}/superd/superd", "serve", "-c", SCRATCH + "/superd.toml"],
                                       stdout=subprocess.DEVNULL, stderr=logs)
    with open(SCRATCH + "/xinetd.conf", "w") as f:
        f.write(f"""defaults
{{
        instances       = UNLIMITED
        per_source      = UNLIMITED
        cps             = 100000 1
        log_type        = FILE {SCRATCH}/xinetd.log
        log_on_success  =
        log_on_failure  =
}}
service superd-bench
{{
        type            = UNLISTED
        port            = {PORTS['xinetd']}
        bind            = 127.0.0.1
        socket_type     = stream
        protocol        = tcp
        wait            = no
        user            = nobody
        server          = {svc}
        flags           = REUSE
}}
""")
    if "xinetd" in wanted:
        procs["xinetd"] = subprocess.Popen(["xinetd", "-dontfork", "-f", SCRATCH + "/xinetd.conf",
                                            "-pidfile", SCRATCH + "/xinetd.pid"], stdout=subprocess.DEVNULL, stderr=logs)
    if "tcpserver" in wanted:
        procs["tcpserver"] = subprocess.Popen(["tcpserver", "-H", "-R", "-l", "0", "-c", "1000", "-b", "1024",
                                               "-u", "65534", "-g", "65534", "127.0.0.1", str(PORTS["tcpserver"]), svc],
                                              stdout=subprocess.DEVNULL, stderr=logs)
    for name, port in PORTS.items():
        if name in wanted and not wait_port(port):
            stop_all(procs)
            sys.exit(f"compare: {name} did not answer on port {port}; see {SCRATCH}/servers.log")
    return procs


def stop_all(procs):
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def load(port, conc, seconds):
    meter = Meter()
    meter.start()
    out = subprocess.run([f"{BUILD}/bench/loadgen", "--target", f"127.0.0.1:{port}", "-c", str(conc),
                          "-d", str(seconds), "--expect", "hello\\n", "--json"],
                         capture_output=True, text=True, timeout=seconds + 60)
    foreign = meter.stop()
    try:
        j = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        j = {"conns_per_s": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"), "failed": -1}
    j["foreign_cpu"] = foreign
    return j


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true", help="3 rounds of 2 s (about 2 minutes)")
    ap.add_argument("--full", action="store_true", help="5 rounds of 8 s")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--uid-range", help="superd's dynamic_uid_range as LO-HI (default 90000-99999); a small one "
                    "recycles UIDs soon, so state_directory_idmap's per-(UID, owner) namespace cache is warm")
    ap.add_argument("--systems", help="start and measure only these (comma-separated; default: all)")
    ap.add_argument("--raw", help="also write every window's loadgen result and foreign CPU here (JSON)")
    ap.add_argument("--json", default=os.path.join(HERE, "compare-latest.json"),
                    help="the medians of the table, as JSON (bench/plot.py compare reads it)")
    args = ap.parse_args()
    rounds, seconds = (5, 8) if args.full else (3, 2)
    if os.geteuid() != 0:
        sys.exit("compare: run as root (superd switches UIDs; xinetd binds as root)")
    svc_src = f"{BUILD}/bench/svc_hello"
    os.makedirs(SCRATCH, exist_ok=True)
    os.chmod(os.path.dirname(SCRATCH), 0o755)
    os.chmod(SCRATCH, 0o755)
    svc = SCRATCH + "/svc_hello"
    shutil.copy(svc_src, svc)
    os.chmod(svc, 0o755)
    nolibc = None
    if os.path.exists(f"{BUILD}/bench/svc_hello_nolibc"):  # x86_64 and aarch64 only
        nolibc = SCRATCH + "/svc_hello_nolibc"
        shutil.copy(f"{BUILD}/bench/svc_hello_nolibc", nolibc)
        os.chmod(nolibc, 0o755)
    global UID_RANGE
    if args.uid_range:
        UID_RANGE = tuple(int(x) for x in args.uid_range.split("-"))
    names = [n for n in PORTS if (not args.systems or n in args.systems.split(",")) and
             (nolibc or not n.endswith("-nolibc"))]
    procs = start_all(svc, set(names), nolibc)
    concs = (1, 8, 64)
    results = {(n, c): [] for n in names for c in concs}
    redone = {c: 0 for c in concs}
    t0 = time.time()
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for c in concs:
                row = {n: load(PORTS[n], c, seconds) for n in order}
                # A round is compared whole: if any system's window was loaded, it is run again
                # once, and if that is loaded too, all of it is left out (marked "loaded").
                loaded = any(x["foreign_cpu"] > LOADED for x in row.values())
                if loaded:
                    redone[c] += 1
                    row = {n: load(PORTS[n], c, seconds) for n in order}
                    loaded = any(x["foreign_cpu"] > LOADED for x in row.values())
                for n, x in row.items():
                    x["loaded"] = loaded
                    results[(n, c)].append(x)
            print(f"compare: round {r + 1}/{rounds} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    finally:
        stop_all(procs)

    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({f"{n} c={c}": v for (n, c), v in results.items()}, f, indent=1)

    def med(n, c, k):
        vals = [x[k] for x in results.get((n, c), []) if x.get("failed", 0) >= 0 and not x["loaded"]]
        return statistics.median(vals) if vals else float("nan")

    failures = sum(x.get("failed", 0) for v in results.values() for x in v)
    loaded_rounds = {c: sum(x["loaded"] for x in results[(names[0], c)]) for c in concs}
    foreign = [x["foreign_cpu"] for v in results.values() for x in v]
    foreign_line = (f"Foreign CPU (others' use of this machine during each window): median {statistics.median(foreign):.2f}, "
                    f"max {max(foreign):.2f} CPUs; rounds run again for a loaded window (> {LOADED} CPUs), and those "
                    f"left out as still loaded, per concurrency: " +
                    ", ".join(f"c={c}: {redone[c]} and {loaded_rounds[c]} of {rounds}" for c in concs) + ".")
    rows = [{"system": n, "c": c, "conns_per_s": med(n, c, "conns_per_s"), "p50_ms": med(n, c, "p50_ms"),
             "p99_ms": med(n, c, "p99_ms"), "failed": sum(max(x.get("failed", 0), 0) for x in results[(n, c)])}
            for c in concs for n in names]
    lines = ["| system | c | conns/s | p50 ms | p99 ms | × rawspawn | × xinetd | p99 × rawspawn | failed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in concs:
        xin = med("xinetd", c, "conns_per_s")
        for n in names:
            raw, raw99 = med(baseline(n), c, "conns_per_s"), med(baseline(n), c, "p99_ms")
            cps = med(n, c, "conns_per_s")
            lines.append(f"| {n} | {c} | {cps:.0f} | {med(n, c, 'p50_ms'):.2f} | {med(n, c, 'p99_ms'):.2f} | "
                         f"{cps / raw:.2f} | {cps / xin:.2f} | {med(n, c, 'p99_ms') / raw99:.2f} | "
                         f"{sum(max(x.get('failed', 0), 0) for x in results[(n, c)])} |")
    idmap_line = ""
    if "superd-idmap" in names and "superd-state" in names:
        idmap_line = "state_directory_idmap = true (superd-idmap / superd-state, conns/s): " + ", ".join(
            f"c={c}: {med('superd-idmap', c, 'conns_per_s') / med('superd-state', c, 'conns_per_s'):.3f}"
            for c in concs) + ".\n"
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mode = "full" if args.full else "short"
    text = f"""# bench/compare results

Machine: {os.cpu_count()} CPUs ({cpu}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB,
Linux {platform.release()}. Mode: {mode} ({rounds} interleaved rounds of {seconds} s per system and concurrency;
medians). Loopback TCP, service `bench/svc_hello` (static; the `-nolibc` rows: `bench/svc_hello_nolibc`, and their
× rawspawn is to rawspawn-nolibc). Failed connections in the whole run: {failures}
(per system in the last column: refused, reset or timed out as loadgen saw them).

{foreign_line}

{idmap_line}
Reproduce: `bash bench/compare.sh --{mode}` (as root).

{chr(10).join(lines)}

Peers as configured: xinetd `instances = UNLIMITED`, `per_source = UNLIMITED`, `cps = 100000 1`,
`user = nobody`, logging to a file with empty `log_on_success`/`log_on_failure`; tcpserver
`-H -R -l 0 -c 1000 -b 1024 -u 65534 -g 65534`; superd `max_connections = 1024`, `backlog = 1024`,
`log_level = "warning"`; rawspawn `--backlog 1024`.
"""
    with open(args.out, "w") as f:
        f.write(text)
    with open(args.json, "w") as f:
        json.dump({"mode": mode, "rounds": rounds, "seconds": seconds, "rows": rows}, f, indent=1)
    print(text)
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
