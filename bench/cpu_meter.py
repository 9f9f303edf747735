"""Foreign CPU during a bench window: the CPU time the whole machine spent busy (/proc/stat:
user, nice, system and stolen time) minus what this bench's own process tree spent (the systems
under test, their instances, the load generator) and what kernel threads spent on its behalf. The machine is shared: a round during which others used the CPU is not
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
    """CPU seconds the machine spent in user, nice and system time, plus time the hypervisor
    stole. Interrupt and softirq time are left out: loopback TCP is processed there, on behalf
    of whichever process sent the packet, so it is the bench's own load."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, steal = v[0], v[1], v[2], v[7] if len(v) > 7 else 0
    return (user + nice + system + steal) / HZ  # guest time is already in user


def kernel_threads_cpu():
    """CPU seconds per kernel thread (kthreadd's children), by PID: kworkers and RCU threads
    that free the namespaces and mounts the bench's instances leave are the bench's load too.
    Kept per PID because kworkers come and go: a sum would drop when one with a long history
    exits, and that drop would be counted as someone else's CPU."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == 2 or pid == "2":
            out[int(pid)] = (int(fields[11]) + int(fields[12])) / HZ
    return out


def kernel_threads_delta(before, after):
    """What kernel threads used between two samples: the growth of those alive at both, and all
    of a thread that appeared (one that exited in between is lost, a small undercount)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items() if cpu >= before.get(pid, 0.0))


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
        self.t0, self.busy0, self.ours0, self.kthreads0 = time.time(), machine_busy(), tree_cpu(self.root), kernel_threads_cpu()

    def stop(self):
        elapsed = max(time.time() - self.t0, 1e-3)
        # CPU seconds the bench used: its process tree and the kernel threads working for it.
        self.ours = tree_cpu(self.root) - self.ours0 + kernel_threads_delta(self.kthreads0, kernel_threads_cpu())
        foreign = (machine_busy() - self.busy0) - self.ours
        return max(foreign, 0.0) / elapsed
