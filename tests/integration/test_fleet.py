"""A fleet on one machine (issue 15, item 2): Debian's real HAProxy in `mode tcp` balances two
hosts, each a network namespace with its own superd (own scratch roots, own UID range), with
`send-proxy-v2` and `check send-proxy-v2`. Clients in the balancer's namespace bind distinct
source addresses, so they are distinct real clients. Checked: each service sees its real client;
a per-source limit of 2 holds on each host (per host: the hosts do not share counts); a denied
client is refused by the superd that receives it; HAProxy's health checks arrive as PROXY LOCAL
and spawn nothing; and after `kill -9` of one superd, HAProxy marks that host down and new
connections succeed through the other, with no more failures than connections in flight.

Only addresses inside the namespaces the test creates (10.199.0.0/16); nothing leaves them."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from harness import Superd, check, main, poll_until, read_all, service, skip

RANGES = {"a": (101800, 101899), "b": (101900, 101999)}
PORT = 8080
FRONT = "10.199.9.1"
CLIENTS = ["10.199.9.11", "10.199.9.12", "10.199.9.13", "10.199.9.14"]
DENIED = "10.199.9.13"
NS = {k: f"sdfleet-{os.getpid()}-{k}" for k in ("lb", "a", "b")}
NET = {"a": ("10.199.1.1", "10.199.1.2"), "b": ("10.199.2.1", "10.199.2.2")}


# ---------------------------------------------------------------- the clients (in the lb namespace)

def client_hold(src, n):
    """Opens n connections from `src` one after the other, each until the service's environment
    arrives (served) or the connection closes (refused); prints what each saw; keeps the served
    ones open until stdin closes."""
    held, seen = [], []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(10)
        s.bind((src, 0))
        s.connect((FRONT, PORT))
        data = b""
        while b"\n\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        env = dict(l.split("=", 1) for l in data.decode(errors="replace").splitlines() if "=" in l)
        seen.append(env.get("REMOTE_ADDR", "refused"))
        held.append(s)
    print(json.dumps(seen), flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


def client_load(seconds, threads, port=PORT + 1):
    """`threads` closed loops, each from its own source address, for `seconds`: connect, send
    a line, half-close, expect it echoed. Prints ok, failed and the failures' reasons."""
    stats = {"ok": 0, "failed": 0, "reasons": {}}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run(i):
        src = CLIENTS[i % 2]  # .11 and .12: never denied
        while time.monotonic() < end:
            try:
                with socket.socket() as s:
                    s.settimeout(5)
                    s.bind((src, 0))
                    s.connect((FRONT, port))
                    s.sendall(b"ping\n")
                    s.shutdown(socket.SHUT_WR)
                    ok = read_all(s).endswith(b"\n\nping\n")
                    why = "no echo"
            except OSError as e:
                ok, why = False, type(e).__name__
            with lock:
                stats["ok" if ok else "failed"] += 1
                if not ok:
                    stats["reasons"][why] = stats["reasons"].get(why, 0) + 1

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 30)
    print(json.dumps(stats), flush=True)


# ---------------------------------------------------------------- the test

def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def in_lb(*args, **kw):
    return subprocess.Popen(["ip", "netns", "exec", NS["lb"], sys.executable, os.path.abspath(__file__), *args],
                            stdout=subprocess.PIPE, text=True, **kw)


def build_network():
    for ns in NS.values():
        sh("ip", "netns", "add", ns)
    lb = NS["lb"]
    sh("ip", "-n", lb, "link", "set", "lo", "up")
    for a in [FRONT, *CLIENTS]:
        sh("ip", "-n", lb, "addr", "add", f"{a}/32", "dev", "lo")
    for k in ("a", "b"):
        near, far = NET[k]
        sh("ip", "-n", lb, "link", "add", f"to{k}", "type", "veth", "peer", "name", "eth0", "netns", NS[k])
        sh("ip", "-n", lb, "addr", "add", f"{near}/24", "dev", f"to{k}")
        sh("ip", "-n", lb, "link", "set", f"to{k}", "up")
        sh("ip", "-n", NS[k], "addr", "add", f"{far}/24", "dev", "eth0")
        sh("ip", "-n", NS[k], "link", "set", "eth0", "up")
        sh("ip", "-n", NS[k], "link", "set", "lo", "up")


def remove_network():
    for ns in NS.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


HAPROXY_CFG = """global
    stats socket {sock} level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend web
    bind {front}:{port}
    default_backend web
backend web
    balance roundrobin
    server a {a}:{port} send-proxy-v2 check inter 200ms fall 2 rise 2
    server b {b}:{port} send-proxy-v2 check inter 200ms fall 2 rise 2
frontend bulk
    bind {front}:{bulk}
    default_backend bulk
backend bulk
    balance roundrobin
    server a {a}:{bulk} send-proxy-v2 check inter 200ms fall 2 rise 2
    server b {b}:{bulk} send-proxy-v2 check inter 200ms fall 2 rise 2
"""


def haproxy_status(sock, backend="bulk"):
    """Server name -> status (UP, DOWN, ...) of `backend`, from HAProxy's own stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock)
        s.sendall(b"show stat\n")
        text = read_all(s).decode()
    header = text.splitlines()[0].lstrip("# ").split(",")
    out = {}
    for line in text.splitlines()[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") in ("a", "b"):
            out[row["svname"]] = row["status"].split()[0]
    return out


def host(k):
    """A host's superd: `web` with a per-source limit of 2 and a deny list, `bulk` (for the
    failover load) without the limit."""
    sock = f'proxy_protocol = "v2"\nproxy_allow = ["{NET[k][0]}/32"]\ndeny = ["{DENIED}"]'
    return Superd(f"fleet-{k}", {
        "web": service(f"{NET[k][1]}:{PORT}", "env-echo", socket_extra=sock + "\nmax_connections_per_source = 2"),
        "bulk": service(f"{NET[k][1]}:{PORT + 1}", "env-echo", socket_extra=sock)}, RANGES[k])


def test_haproxy_in_front_of_two_hosts():
    if not shutil.which("haproxy"):
        skip("haproxy is not installed (tests/run installs Debian's haproxy)")
    remove_network()
    hosts = {k: host(k) for k in ("a", "b")}
    proc = None
    try:
        build_network()
        for k, d in hosts.items():
            d.start(wrapper=("ip", "netns", "exec", NS[k]))
        sock = os.path.join(hosts["a"].root, "haproxy.sock")
        cfg = os.path.join(hosts["a"].root, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG.format(sock=sock, front=FRONT, port=PORT, bulk=PORT + 1, a=NET["a"][1], b=NET["b"][1]))
        proc = subprocess.Popen(["ip", "netns", "exec", NS["lb"], "haproxy", "-db", "-f", cfg],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(hosts["a"].root, "haproxy.log"), "w"))
        check(poll_until(lambda: os.path.exists(sock) and haproxy_status(sock, "web") == haproxy_status(sock) ==
                         {"a": "UP", "b": "UP"}, 15),
              "HAProxy sees both hosts up")

        # The real clients, and a per-source limit of 2 on each host: 6 from one client over
        # round robin are 3 per host, 2 served on each.
        one = in_lb("--client", "hold", CLIENTS[0], "6", stdin=subprocess.PIPE)
        seen = json.loads(one.stdout.readline())
        other = in_lb("--client", "hold", CLIENTS[1], "2", stdin=subprocess.PIPE)
        seen_other = json.loads(other.stdout.readline())
        check(sorted(seen) == sorted(["refused"] * 2 + [CLIENTS[0]] * 4), f"6 from {CLIENTS[0]}: 2 per host: {seen}")
        check(seen_other == [CLIENTS[1]] * 2, f"another client is not limited by the first: {seen_other}")
        for k, d in hosts.items():
            d.wait_log("max_connections_per_source reached")
        denied = in_lb("--client", "hold", DENIED, "2", stdin=subprocess.PIPE)
        check(json.loads(denied.stdout.readline()) == ["refused", "refused"], "the denied client is refused")
        for p in (one, other, denied):
            p.stdin.close()
            p.wait(timeout=20)
        logs = {k: d.log() for k, d in hosts.items()}
        for k in hosts:
            check(f"REFUSE web peer={DENIED}:" in logs[k], f"host {k} refused {DENIED} itself: {logs[k][-1500:]}")
            check(logs[k].count("START web ") == 3, f"host {k}: 2 of {CLIENTS[0]}, 1 of {CLIENTS[1]}, and no "
                                                     f"START for a health check: {logs[k].count('START web ')}")

        # Health checks came all along, as PROXY LOCAL, spawning nothing.
        def checks(d):
            return [svc.get("proxy_health_checks", 0) for svc in json.loads(d.cli("status", "--json").stdout)["services"]]
        for k, d in hosts.items():
            check(poll_until(lambda: min(checks(d)) >= 3, 10), f"host {k} counted HAProxy's LOCAL checks: {checks(d)}")
        logs = {k: d.log() for k, d in hosts.items()}
        for k in hosts:
            check(logs[k].count("START web ") == 3, f"host {k}: still no START for a health check")

        # Failover: kill -9 one superd under load; HAProxy marks it down; the other serves.
        load = in_lb("--client", "load", "4", "4")
        time.sleep(1.5)
        t_kill = time.monotonic()
        hosts["a"].kill()
        check(poll_until(lambda: haproxy_status(sock).get("a") == "DOWN", 10), "HAProxy marks host a down")
        down_ms = (time.monotonic() - t_kill) * 1000
        stats = json.loads(load.stdout.readline())
        load.wait(timeout=30)
        print(f"failover: {stats['ok'] + stats['failed']} connections at 4 in flight, {stats['failed']} failed "
              f"{stats['reasons']}; host a marked down {down_ms:.0f} ms after kill -9")
        check(stats["ok"] > 50 and stats["failed"] <= 4, f"no more failures than in flight (4): {stats}")
        after = in_lb("--client", "load", "1", "2")
        stats = json.loads(after.stdout.readline())
        after.wait(timeout=30)
        check(stats["failed"] == 0 and stats["ok"] > 10, f"after the failover, all through host b: {stats}")

        # The host comes back: a restart sweeps what the killed superd left, HAProxy takes it in.
        hosts["a"].start(wrapper=("ip", "netns", "exec", NS["a"]))
        check(poll_until(lambda: haproxy_status(sock).get("a") == "UP", 15), "host a is up again")
        for d in hosts.values():
            d.stop_clean()
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=20)
        for d in hosts.values():
            d.close()
        remove_network()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        if sys.argv[2] == "hold":
            client_hold(sys.argv[3], int(sys.argv[4]))
        else:
            client_load(float(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    main([test_haproxy_in_front_of_two_hosts])
