"""bench/faults.py's resource cases: a full runtime or state root, too few descriptors for superd,
an exhausted UID pool, and memory pressure from a neighbour. Each returns (figures, goal, ok,
foreign CPU) as faults.py's cases do."""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time

import benchlib
from cpu_meter import Meter
from faultlib import Superd, build, connect, procs_in_range

PORT = 19360  # each case takes PORT + 4*k .. +3


def hello_svc(port, extra=""):
    return benchlib.service_toml(port, "svc_hello") + extra


def served(port, timeout=5):
    try:
        with connect(port, timeout) as s:
            return s.recv(64) == b"hello\n"
    except OSError:
        return False


def count_served(port, n):
    return sum(served(port) for _ in range(n))


def fill_svc(port, probe, target, extra):
    """A hostile service: the probe writes up to 1 GiB into `target` until ENOSPC, says how it
    ended, then holds the connection (and its instance) until the peer closes it."""
    return (f'[socket]\nlisten = ["127.0.0.1:{port}"]\n[service]\n'
            f'exec = ["/bin/sh", "-c", "{probe} fill 1048576 {target}; exec cat >/dev/null"]\n{extra}')


def enospc(case, sub, kind, port, lo):
    """The root `sub` (run or lib) is a 16 MiB tmpfs. A hostile instance fills it: the runtime
    root through a directory there it may write to (`read_write_paths`, mode 1777: an instance's
    own runtime_directory is a tmpfs of its own, which cannot fill the root), the state root
    through its own state_directory. Figures: what
    the filler saw, whether superd survived and served a service that needs a directory of its
    own in that root while it was full (and its FAIL lines), serving once the space came back,
    and a superd started into the root while it is full (a clear error, or serving; not a
    crash)."""
    probe = build("tests", "probe")
    d = Superd(case, lo, lo + 99, {})
    mnt = d.mount_tmpfs(sub, "16M")
    if kind == "runtime_directory":
        os.makedirs(mnt + "/spool")
        os.chmod(mnt + "/spool", 0o1777)
        hog = fill_svc(port, probe, mnt + "/spool", f'read_write_paths = ["{mnt}/spool"]\n')
    else:
        hog = fill_svc(port, probe, '\\"$STATE_DIRECTORY\\"', 'state_directory = "hog"\n')
    d.write_service("hog", hog)
    d.write_service("hello", hello_svc(port + 1, f'{kind} = "hello"\n'))
    try:
        meter = Meter()
        meter.start()
        if d.start() is None:
            return "superd did not start on the empty tmpfs:" + d.log()[-300:], "", False
        before = served(port + 1)
        hog = connect(port, 30)
        said = hog.recv(256).decode(errors="replace").strip()
        full_ok = count_served(port + 1, 10)
        fails = re.findall(r"FAIL hello .*", d.log())
        alive_full = d.alive()
        hog.close()
        for dirpath, _, files in os.walk(mnt):  # the space comes back: root removes the hog's file
            for f in files:
                if f.startswith("fill-"):
                    os.unlink(os.path.join(dirpath, f))
        back = benchlib.wait_until(lambda: served(port + 1, 2), 10, 0.1)
        # A superd started afresh (as after a reboot: no lease table yet) while the root is full.
        d.kill()
        shutil.rmtree(os.path.join(d.root, "run", "superd"), ignore_errors=True)
        filler = os.path.join(d.root, sub, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)
        with open(filler, "ab") as f:  # the last pages, if dd stopped at a block boundary
            try:
                f.write(b"\0" * 65536)
            except OSError:
                pass
        ready_full = d.start(timeout=10)
        rc = None
        if ready_full is None:
            try:
                rc = d.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = "hung"
        start_log = d.log().splitlines()[-3:]
        err = next((x for x in reversed(start_log) if "error" in x.lower()), "")
        full_start_served = served(port + 1) if ready_full is not None else False
        d.kill() if d.alive() else None
        os.unlink(filler)
        ready_again = d.start()
        again = ready_again is not None and served(port + 1)
        foreign = meter.stop()
        crashed = isinstance(rc, int) and rc < 0
        how = (f"READY and serving: {full_start_served}" if ready_full is not None else
               f"refused, exit {rc}: {err.split(': ', 1)[-1][:220]!r}")
        ok = (before and alive_full and back and again and not crashed and rc != "hung"
              and (ready_full is not None or err))
        line = (f"{sub} root on a 16 MiB tmpfs; the hog says {said!r}; superd alive while full: {alive_full}, "
                f"served {full_ok}/10 of a service with its own {kind} ({len(fails)} FAIL lines"
                f"{': ' + fails[0].split('failed: ', 1)[-1][:80] if fails else ''}); serves when space is back: {back}; "
                f"a start into the full root: {how}; after freeing it: {again}")
        return line, "clear errors, no crash, serves when space returns", ok, foreign
    finally:
        d.close()


def case_enospc_run():
    return enospc("enospc-run", "run", "runtime_directory", PORT, 98500)


def case_enospc_state():
    return enospc("enospc-state", "lib", "state_directory", PORT + 4, 98600)


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def case_emfile(nofile=64, clients=60):
    """superd under `prlimit --nofile=64` (soft and hard: it cannot raise it) and 60 clients of
    svc_hold at once: how many are served while the descriptors are short, superd's CPU
    meanwhile (a loop on EMFILE would burn a core), and, as served clients leave, whether every
    waiting one is served in turn: none lost (reset or closed unserved)."""
    lo, hi, port = 98700, 98799, PORT + 8
    d = Superd("emfile", lo, hi, {"hold": benchlib.service_toml(port, "svc_hold")})
    socks, state = [], {}  # state: client index -> "up" / "lost"
    try:
        meter = Meter()
        meter.start()
        if d.start(prefix=("prlimit", f"--nofile={nofile}:{nofile}")) is None:
            return "superd did not start under the limit: " + d.log()[-300:], "", False
        for _ in range(clients):
            s = socket.socket()
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)

        def poll(seconds):
            """Reads what arrives for `seconds`: client i becomes 'up' or 'lost' (EOF, reset)."""
            end = time.time() + seconds
            while time.time() < end:
                waiting = {socks[i].fileno(): i for i in range(clients) if i not in state}
                if not waiting:
                    return
                r, _, _ = select.select(list(waiting), [], [], max(0.0, min(0.2, end - time.time())))
                for fd in r:
                    try:
                        data = socks[waiting[fd]].recv(16)
                    except OSError:
                        data = b""
                    state[waiting[fd]] = "up" if data.startswith(b"up") else "lost"
        c0, t0 = cpu_of(d.proc.pid), time.time()
        poll(3)
        cpu = (cpu_of(d.proc.pid) - c0) / (time.time() - t0)
        first = sum(1 for v in state.values() if v == "up")
        emfile_lines = len(re.findall(r"(?i)too many open files|EMFILE|out of file descriptors", d.log()))
        # Served clients leave, 8 at a time; the waiting ones must follow.
        closed, rounds = set(), 0
        while len(state) < clients and rounds < 40:
            rounds += 1
            for i in [i for i, v in state.items() if v == "up" and i not in closed][:8]:
                socks[i].close()
                closed.add(i)
            poll(1)
        states = list(state.values())
        up, lost = states.count("up"), states.count("lost")
        never = clients - len(states)
        alive = d.alive()
        foreign = meter.stop()
        ok = up == clients and not lost and alive and cpu < 0.5
        line = (f"RLIMIT_NOFILE {nofile}, {clients} clients at once: {first} served while short of fds, superd CPU "
                f"meanwhile {cpu:.2f}, {emfile_lines} log lines on the shortage; as served ones left: {up} served in all, "
                f"{lost} lost, {never} never served; superd alive {alive}")
        return line, "waiting clients stay in the backlog, none lost", ok, foreign
    finally:
        for s in socks:
            s.close()
        d.close()


def case_pool(clients=100, size=4):
    """A pool of 4 UIDs and 100 svc_hold clients at once: 4 served, 96 refused (closed unserved)
    each with a REFUSE line; once the 4 leave, every UID is back in the pool and 4 new clients
    are served."""
    lo, port = 98900, PORT + 12
    hi = lo + size - 1
    d = Superd("pool", lo, hi, {"hold": benchlib.service_toml(port, "svc_hold")})
    socks = []
    try:
        meter = Meter()
        meter.start()
        if d.start() is None:
            return "superd did not start: " + d.log()[-300:], "", False
        for _ in range(clients):
            s = socket.socket()
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            socks.append(s)
        up, refused, other = [], 0, 0
        for s in socks:
            try:
                data = s.recv(16)
            except OSError:
                data = None
            if data == b"up\n":
                up.append(s)
            elif data in (b"", None):
                refused += 1
            else:
                other += 1
        refuse_lines = len(re.findall(r"REFUSE hold .*pool exhausted", d.log()))
        for s in socks:
            s.close()
        socks = []
        t0 = time.time()
        back = benchlib.wait_until(lambda: d.pool().get("free") == size and not procs_in_range(lo, hi), 15, 0.05)
        back_s = time.time() - t0
        pool = d.pool()
        again = 0
        for _ in range(size):
            s = connect(port)
            socks.append(s)
            again += s.recv(16) == b"up\n"
        foreign = meter.stop()
        ok = len(up) == size and refused == clients - size and refuse_lines == refused and back and again == size
        line = (f"{size} UIDs, {clients} clients at once: {len(up)} served, {refused} refused ({refuse_lines} REFUSE "
                f"lines naming the pool), {other} other; after they left: {pool.get('free')}/{size} UIDs free in "
                f"{back_s:.2f} s, {pool.get('quarantined')} quarantined; then {again}/{size} new clients served")
        return line, f"{clients - size} refused with log lines, {size} served, all {size} UIDs back", ok, foreign
    finally:
        for s in socks:
            s.close()
        d.close()


HOG = ("import sys\na = []\ntry:\n    while True:\n        a.append(bytearray(1 << 20))\n"
       "except MemoryError:\n    pass\nsys.stdout.write('oom %d\\n' % len(a))\nsys.stdout.flush()\n"
       "sys.stdin.buffer.read()\n")


def case_memory(rounds=3, seconds=4, hogs=8, limit="256M", conc=4):
    """A hog (python3 touching 1 MiB blocks until limits.as stops it, then holding what it got
    until its client leaves) beside svc_hello. Interleaved rounds of hello's rate at c=4: alone,
    while 8 hogs start and allocate, while they hold their memory, and while 8 hogs of a twin
    service with `nice = 19` allocate; ratios of the medians.

    What the allocation takes from the neighbour is CPU (page faults on 2 cores), not memory: the
    holding window shows the memory itself costs nothing. On a host without a cgroup cpu
    controller (this one's cgroup2 offers none) the bound an operator has is the service's `nice`,
    so the goal is judged on the niced twin; the unbounded figure is printed beside it."""
    import statistics
    lo, hi, port = 98800, 98899, PORT + 16

    def hog(p, extra=""):
        return (f'[socket]\nlisten = ["127.0.0.1:{p}"]\n[service]\n'
                f'exec = ["/usr/bin/python3", "-c", {json.dumps(HOG)}]\n{extra}limits = {{ as = "{limit}" }}\n')
    d = Superd("memory", lo, hi, {"hello": hello_svc(port), "hog": hog(port + 1), "hognice": hog(port + 2, "nice = 19\n")})
    held = []
    try:
        meter = Meter()
        meter.start()
        if d.start() is None:
            return "superd did not start: " + d.log()[-300:], "", False
        alone, during, holding, niced, said = [], [], [], [], []
        rate = lambda: benchlib.loadgen_round(port, seconds, conc)["conns_per_s"]  # noqa: E731

        def with_hogs(hog_port, windows):
            nonlocal held
            held = [connect(hog_port, 60) for _ in range(hogs)]
            for w in windows:
                w.append(rate())
                if w is not holding:  # the allocation is over once every hog said how far it got
                    for s in held:
                        try:
                            said.append(s.recv(64).decode(errors="replace").strip())
                        except OSError:
                            said.append("?")
            for s in held:
                s.close()
            held = []
        for _ in range(rounds):
            alone.append(rate())
            with_hogs(port + 1, [during, holding])
            with_hogs(port + 2, [niced])
        foreign = meter.stop()
        med = statistics.median
        base = max(med(alone), 1)
        r_during, r_held, r_nice = med(during) / base, med(holding) / base, med(niced) / base
        mib = sorted({int(x.split()[1]) for x in said if x.startswith("oom ")})
        stopped = sum(1 for x in said if x.startswith("oom "))
        ok = r_nice >= 0.8 and d.alive() and stopped == len(said)
        line = (f"hello at c={conc}: {med(alone):.0f} conns/s alone, {med(during):.0f} while {hogs} hogs allocate "
                f"({r_during:.2f}x), {med(holding):.0f} while they hold it ({r_held:.2f}x), {med(niced):.0f} while "
                f"{hogs} hogs with nice = 19 allocate ({r_nice:.2f}x); hogs stopped by limits.as = {limit}: "
                f"{stopped}/{len(said)}, at {mib[0] if mib else '?'}-{mib[-1] if mib else '?'} MiB; "
                f"superd alive {d.alive()}")
        return line, "≥ 0.8x the rate alone (hogs with nice = 19: no cpu controller here)", ok, foreign
    finally:
        for s in held:
            s.close()
        d.close()


CASES = {"enospc-run": case_enospc_run, "enospc-state": case_enospc_state, "emfile": case_emfile,
         "pool": case_pool, "memory": case_memory}
