#!/usr/bin/env python3
"""bench/nss.py [ROUNDS] [MS]: getpwuid() through libnss_superd.so.2, in ns per lookup, with 0 and
4,000 live leases in the default range (61184-65519), against nss-files on the same machine.
Each case runs build/bench/nss_lookup for MS ms (default 1000) in a private mount namespace
whose /etc/nsswitch.conf names the source (the machine's own file is never touched); the cases
are interleaved within every round (default 7 rounds) and each records the foreign CPU, so a
loaded round is left out of the medians. Run as root from the repository root after
`ninja -C build`."""
import json
import os
import shutil
import statistics
import subprocess
import sys

from cpu_meter import LOADED, Meter

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "..", "build")
SCRATCH = "/srv/superd-bench-nss"
FIRST, LAST = 61184, 65519

CASES = [  # name, nsswitch passwd line, leases, UID looked up
    ("superd, 0 leases, miss", "superd", 0, 62000),
    ("superd, 4000 leases, hit", "superd", 4000, FIRST + 3999),
    ("superd, 4000 leases, miss", "superd", 4000, 65400),
    ("files, miss", "files", 0, 62000),
    ("files superd, 4000 leases, hit", "files superd", 4000, FIRST + 3999),
]


def lookup(conf, leases_dir, uid, ms):
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(BUILD, "superd"), SUPERD_NSS_LEASES=leases_dir)
    script = 'mount --bind "$0" /etc/nsswitch.conf && exec "$@"'
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, conf,
                          os.path.join(BUILD, "bench", "nss_lookup"), "lookup", str(uid), str(ms)],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["ns_per_lookup"]), int(fields["found"])


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    ms = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    shutil.rmtree(SCRATCH, ignore_errors=True)
    dirs = {}
    for n in (0, 4000):
        d = os.path.join(SCRATCH, f"leases-{n}", "dynamic-uid")
        os.makedirs(d)
        subprocess.run([os.path.join(BUILD, "bench", "nss_lookup"), "fill", d, str(FIRST), str(LAST), str(n)],
                       check=True)
        dirs[n] = d
    confs = {}
    for _, source, _, _ in CASES:
        path = os.path.join(SCRATCH, source.replace(" ", "-") + ".conf")
        with open(path, "w") as f:
            f.write(f"passwd: {source}\ngroup: {source}\n")
        confs[source] = path
    results = {c[0]: [] for c in CASES}
    loaded = 0
    try:
        for r in range(rounds):
            for name, source, leases, uid in CASES:
                meter = Meter()
                meter.start()
                ns, found = lookup(confs[source], dirs[leases], uid, ms)
                foreign = meter.stop()
                want = 1 if "hit" in name else 0
                if found != want:
                    sys.exit(f"nss.py: {name}: found={found}, expected {want}")
                mark = "" if foreign <= LOADED else "  (loaded: left out)"
                print(f"round {r + 1} {name:32s} {ns:8.0f} ns  foreign CPU {foreign:.2f}{mark}", flush=True)
                if foreign <= LOADED:
                    results[name].append(ns)
                else:
                    loaded += 1
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    summary = {name: statistics.median(v) if v else None for name, v in results.items()}
    print(f"\nmedian ns per getpwuid() over unloaded rounds ({loaded} case runs loaded, left out):")
    for name, v in summary.items():
        print(f"  {name:32s} {v:8.0f} ns" if v else f"  {name:32s}  no unloaded round")
    files = summary["files, miss"]
    for name in ("superd, 0 leases, miss", "superd, 4000 leases, hit"):
        if files and summary[name]:
            print(f"  {name} / files miss: {summary[name] / files:.2f}x")
    print(json.dumps({"rounds": rounds, "ms": ms, "median_ns": summary, "loaded_runs": loaded}))


if __name__ == "__main__":
    main()
