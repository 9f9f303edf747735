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


def proc_stats():
    """{pid: (ppid, [utime, stime, cutime, cstime] in seconds)} for every process now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(pid)] = (int(fields[1]), [int(x) / HZ for x in fields[11:15]])
    return out


def kernel_threads_cpu(stats):
    """CPU seconds per kernel thread (kthreadd's children), by PID: kworkers and RCU threads
    that free the namespaces and mounts the bench's instances leave are the bench's load too.
    Kept per PID because kworkers come and go: a sum would drop when one with a long history
    exits, and that drop would be counted as someone else's CPU."""
    return {pid: t[0] + t[1] for pid, (ppid, t) in stats.items() if ppid == 2 or pid == 2}


def kernel_threads_delta(before, after):
    """What kernel threads used between two samples: the growth of those alive at both, and all
    of a thread that appeared (one that exited in between is lost, a small undercount)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items() if cpu >= before.get(pid, 0.0))


def tree_cpu(root, stats):
    """CPU seconds of `root`'s live descendants (each with its reaped children) plus what root
    itself and its reaped children used."""
    total = 0.0
    for pid, (_, t) in stats.items():
        p, hops = pid, 0
        while p in stats and p != root and hops < 64:
            p, hops = stats[p][0], hops + 1
        if p == root and pid != root:
            total += sum(t)
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Meter:
    def __init__(self, root=None):
        self.root = root or os.getpid()

    def start(self):
        stats = proc_stats()
        self.t0, self.busy0 = time.time(), machine_busy()
        self.ours0, self.kthreads0 = tree_cpu(self.root, stats), kernel_threads_cpu(stats)

    def stop(self):
        elapsed = max(time.time() - self.t0, 1e-3)
        # CPU seconds the bench used: its process tree and the kernel threads working for it.
        stats = proc_stats()
        self.ours = tree_cpu(self.root, stats) - self.ours0 + kernel_threads_delta(self.kthreads0, kernel_threads_cpu(stats))
        foreign = (machine_busy() - self.busy0) - self.ours
        return max(foreign, 0.0) / elapsed
