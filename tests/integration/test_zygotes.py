"""Zygotes per sandboxed service (issue 13, item 3): one per CPU that superd may run on (its
affinity mask: taskset, CPUAffinity=), no longer capped at 4, or `zygotes = N` in [superd]; a
bad value is refused with its file, line and key."""
import os
import harness
from harness import SUPERD, Superd, check, main, service, talk_tcp

LO, HI = 100600, 100699
PORT = 17600


def zygote_count(d):
    return len(d.zygotes())


def start_pinned(d, cpus):
    """superd under `taskset -c CPUS` (exec'd: the same PID; its zygotes inherit the mask)."""
    wrapper = os.path.join(d.root, "bin", "superd-pinned")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec taskset -c {cpus} {SUPERD} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    harness.SUPERD = wrapper
    try:
        d.start()
    finally:
        harness.SUPERD = SUPERD


def test_one_zygote_per_cpu_of_the_affinity_mask():
    cpus = os.cpu_count() or 1
    with Superd("zyg-mask", {"a": service(PORT, "id")}, (LO, LO + 49)) as d:
        d.start()
        check(zygote_count(d) == len(os.sched_getaffinity(0)), f"one per CPU: {zygote_count(d)} of {cpus}")
        check(b"uid=" in talk_tcp(PORT), "served")
        d.stop_clean()
        start_pinned(d, "0")
        check(zygote_count(d) == 1, f"taskset -c 0: one zygote, not {zygote_count(d)}")
        check(b"uid=" in talk_tcp(PORT), "served pinned")
        d.stop_clean()


def test_zygotes_key_sets_the_count_past_the_old_cap():
    with Superd("zyg-key", {"a": service(PORT + 1, "id"), "b": service(PORT + 2, "id")}, (LO + 50, LO + 99),
                global_extra="zygotes = 6") as d:
        d.start()
        check(zygote_count(d) == 12, f"6 per service, past the old cap of 4: {zygote_count(d)}")
        outs = [talk_tcp(PORT + 1) for _ in range(12)]
        check(all(b"uid=" in o for o in outs), "served through all of them")
        d.stop_clean()


def test_a_bad_zygotes_value_is_refused_with_its_position():
    with Superd("zyg-bad", {"a": service(PORT + 3, "id")}, (LO + 50, LO + 99), global_extra="zygotes = 1000") as d:
        r = d.cli("check")
        check(r.returncode == 2 and f"{d.config}:7:11: superd.zygotes: must be in 0..256" in r.stderr, f"file, line and key: {r.stderr!r}")


if __name__ == "__main__":
    main([test_one_zygote_per_cpu_of_the_affinity_mask, test_zygotes_key_sets_the_count_past_the_old_cap,
          test_a_bad_zygotes_value_is_refused_with_its_position])
