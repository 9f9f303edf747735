"""Foreign CPU during a bench window: the CPU time the whole machine spent busy (/proc/stat)
minus what this bench's own process tree spent (the systems under test, their instances, the
load generator). The machine is shared: a round during which others used the CPU is not
evidence (a single-threaded baseline suffers more from it than a multi-process superd, which
flatters superd), so every round records it and the reports leave loaded rounds out.

    m = Meter(); m.start(); ...load...; foreign = m.stop()   # in CPUs (0.25 = a quarter core)
"""
import os
import resource
import time

HZ = os.sysconf("SC_CLK_TCK")
LOADED = 0.10  # foreign CPUs above which a round counts as loaded


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / HZ  # guest time is already in user


def tree_cpu(root):
    """CPU seconds of `root`'s live descendants (each with its reaped children) plus what root
    itself and its reaped children used."""
    parent, cpu = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(pid)] = int(fields[1])
        cpu[int(pid)] = sum(int(x) for x in fields[11:15]) / HZ  # utime stime cutime cstime
    total = 0.0
    for pid in cpu:
        p, hops = pid, 0
        while p in parent and p != root and hops < 64:
            p, hops = parent[p], hops + 1
        if p == root and pid != root:
            total += cpu[pid]
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Meter:
    def __init__(self, root=None):
        self.root = root or os.getpid()

    def start(self):
        self.t0, self.busy0, self.ours0 = time.time(), machine_busy(), tree_cpu(self.root)

    def stop(self):
        elapsed = max(time.time() - self.t0, 1e-3)
        foreign = (machine_busy() - self.busy0) - (tree_cpu(self.root) - self.ours0)
        return max(foreign, 0.0) / elapsed
