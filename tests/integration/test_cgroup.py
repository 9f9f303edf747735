"""cgroup v2 bounds: superd says once at start-up whether it can apply memory_max, tasks_max and
cpu_weight, and names the services whose keys have no effect. Per-instance cgroups need a
cgroup2 hierarchy with the memory and pids controllers; where the host has none (this kind of
machine: cgroup v1 plus a v2 mount with hugetlb only) the enforcement test is skipped with the
reason, and the instances are bounded by rlimits and private_tmp_size (test_security)."""
from harness import Superd, check, main, service as svc, talk_tcp

PORT = 12100
LO, HI = 88540, 88549


def host_v2_controllers():
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup2":
                mount = pre.split()[4]
                break
    if not mount:
        return None, None
    own = "/"
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip()
    try:
        with open(mount + ("" if own == "/" else own) + "/cgroup.controllers") as f:
            return mount, f.read().split()
    except OSError:
        return mount, []


def test_start_up_says_whether_cgroup_bounds_apply():
    bounded = svc(PORT + 1, "id", extra='memory_max = "64M"\ntasks_max = 32\ncpu_weight = 50')
    with Superd("cgroup", {"plain": svc(PORT, "id"), "bounded": bounded}, (LO, HI)) as d:
        d.start()
        check(talk_tcp(PORT + 1).decode().startswith("uid="), "a service with cgroup keys still serves")
        log = d.log()
        check(log.count("cgroup v2 bounds not applied") == 1, f"said once:\n{log}")
        mount, controllers = host_v2_controllers()
        if mount is None:
            check("no cgroup2 filesystem is mounted" in log, log)
        elif not {"memory", "pids"} <= set(controllers):
            check(f"hierarchy at {mount} offers" in log and "[" + " ".join(controllers) + "]" in log, log)
        check("memory_max, tasks_max and cpu_weight of bounded have no effect" in log, log)
        check("limits.nproc defaults to 512" in log, log)
        d.stop_clean()
    if mount is None or not {"memory", "pids"} <= set(controllers):
        print(f"SKIP (part): memory_max/tasks_max enforcement: this host's cgroup2 "
              f"({mount or 'not mounted'}) offers [{' '.join(controllers or [])}], not memory and pids")


if __name__ == "__main__":
    main([test_start_up_says_whether_cgroup_bounds_apply])
