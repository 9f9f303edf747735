"""What several bench drivers share: a scratch superd.toml and one timed round of bench/loadgen
with its foreign CPU (cpu_meter.py)."""
import json
import os
import subprocess
import time

from cpu_meter import Meter

# $SUPERD_BUILD names another build directory (bench/faults.sh passes it on).
BUILD = os.environ.get("SUPERD_BUILD") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build")
SUPERD = os.path.join(BUILD, "superd", "superd")


def write_superd_toml(scratch, lo, hi, extra=""):
    """<scratch>/superd.toml: the dynamic range [lo, hi], every root under `scratch`, log level
    warning, and `extra` lines of [superd]."""
    with open(scratch + "/superd.toml", "w") as f:
        f.write(f"""[superd]
dynamic_uid_range = [{lo}, {hi}]
log_level = "warning"
runtime_root = "{scratch}/run"
state_root = "{scratch}/lib"
cache_root = "{scratch}/cache"
logs_root = "{scratch}/log"
{extra}
""")


def service_toml(port, program):
    """A service file for bench's `program` (svc_hello, svc_hold) on 127.0.0.1:port, in the full
    default sandbox, with room for the load (max_connections and backlog 1024)."""
    return f"""[socket]
listen = ["127.0.0.1:{port}"]
max_connections = 1024
backlog = 1024
[service]
exec = ["{BUILD}/bench/{program}"]
"""


def superd_cli(scratch, *args, timeout=120):
    """`superd ARGS -c <scratch>/superd.toml`, its output captured."""
    return subprocess.run([SUPERD, *args, "-c", scratch + "/superd.toml"],
                          capture_output=True, text=True, timeout=timeout)


def wait_until(pred, timeout, interval=0.05):
    """Calls pred() until it is true or `timeout` seconds passed; returns whether it became true."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


def loadgen_round(port, seconds, conc):
    """bench/loadgen against 127.0.0.1:port for `seconds` at concurrency `conc`, expecting
    svc_hello's answer: its JSON result plus "foreign_cpu" (CPUs others used meanwhile) and
    "cpu_us_per_conn" (machine CPU of the bench's own tree per connection)."""
    meter = Meter()
    meter.start()
    out = subprocess.run([f"{BUILD}/bench/loadgen", "--target", f"127.0.0.1:{port}", "-c", str(conc), "-d",
                          str(seconds), "--expect", "hello\n", "--json"], capture_output=True, text=True,
                         timeout=seconds + 60)
    foreign = meter.stop()
    j = json.loads(out.stdout.strip().splitlines()[-1])
    j["foreign_cpu"] = foreign
    # Machine CPU per connection (superd, its instances, the kernel's work for them, loadgen):
    # steadier than the rate on a VM whose speed drifts between rounds.
    j["cpu_us_per_conn"] = 1e6 * meter.ours / max(j.get("ok", 0), 1)
    return j


def interleaved(rounds, sides, loaded_limit):
    """`rounds` rounds of every (name, run) in `sides` in turn, run() giving a loadgen_round
    result; a round in which any side saw foreign CPU above `loaded_limit` is left out whole.
    Prints a line per side and round; returns {name: [clean results]} and the medians
    {name: {"conns_per_s", "p99_ms", "cpu_us_per_conn"}} (exits if every round was loaded)."""
    import statistics
    import sys
    res = {name: [] for name, _ in sides}
    for r in range(rounds):
        pair = {name: run() for name, run in sides}
        loaded = any(j["foreign_cpu"] > loaded_limit for j in pair.values())
        for name, j in pair.items():
            if not loaded:
                res[name].append(j)
            print(f"round {r + 1} {name}: {j['conns_per_s']:.0f} conns/s, p99 {j['p99_ms']:.2f} ms, "
                  f"{j['cpu_us_per_conn']:.0f} us CPU/conn, failed {j.get('failed', 0)}, foreign CPU "
                  f"{j['foreign_cpu']:.2f}{' (loaded: left out)' if loaded else ''}", flush=True)
    if not res[sides[0][0]]:
        sys.exit(f"every round was loaded (foreign CPU > {loaded_limit}): no evidence; run again on a quiet machine")
    med = {name: {k: statistics.median(x[k] for x in v) for k in ("conns_per_s", "p99_ms", "cpu_us_per_conn")}
           for name, v in res.items()}
    return res, med
