"""Admission under load: max_connections defers (never disables), per-source limits, allow and
deny lists, and an exhausted UID pool that refuses with a log line and recovers."""
import re
from harness import Superd, check, main, parallel, service, talk_tcp

LO, HI = 73000, 73999
PORT = 23000


def max_live(log, service):
    live = peak = 0
    for line in log.splitlines():
        if f"START {service} " in line:
            live += 1
            peak = max(peak, live)
        elif f"EXIT {service} " in line:
            live -= 1
    return peak


def talk_from(src, port):
    return talk_tcp(port, source=src, timeout=30)


def test_500_connections_at_once_against_max_connections_16():
    with Superd("max16", {"probe": service(PORT, "nap", "30", socket_extra="max_connections = 16\nbacklog = 1024")},
                (LO, HI)) as d:
        d.start()
        outs = parallel(lambda i: talk_tcp(PORT, timeout=60), 500)
        served = sum(1 for o in outs if o.startswith(b"uid="))
        check(served == 500, f"{served}/500 connections served")
        d.wait_log("EXIT probe", 500)
        peak = max_live(d.log(), "probe")
        check(peak <= 16, f"{peak} live instances at once with max_connections = 16")
        check(peak >= 8, f"the limit was never approached (peak {peak}); the test proves nothing")
        check("max_connections=16 reached, deferring" in d.log(), "deferral not logged")
        check("REFUSE" not in d.log(), "deferred connections must not be refused")
        d.stop_clean()


def test_pool_of_4_uids_with_10_concurrent_clients():
    with Superd("pool4", {"probe": service(PORT + 1, "nap", "1500")}, (LO, LO + 3)) as d:
        d.start()
        outs = parallel(lambda i: talk_tcp(PORT + 1, timeout=30), 10)
        served = [o for o in outs if o.startswith(b"uid=")]
        check(len(served) == 4, f"{len(served)} served with a pool of 4")
        check(d.log().count("reason=\"dynamic UID pool exhausted") == 6, d.log())
        d.wait_log("EXIT probe", 4)
        # Every UID is back: four more concurrent clients get the four UIDs again.
        outs = parallel(lambda i: talk_tcp(PORT + 1, timeout=30), 4)
        uids = sorted(int(re.search(rb"uid=(\d+)", o).group(1)) for o in outs)
        check(uids == [LO, LO + 1, LO + 2, LO + 3], f"UIDs after exhaustion: {uids}")
        check(d.proc.poll() is None, "superd must survive exhaustion")
        d.stop_clean()


def test_allow_deny_and_per_source():
    access = 'allow = ["127.0.0.0/29"]\ndeny = ["127.0.0.3"]\nmax_connections_per_source = 2'
    with Superd("access", {"probe": service(PORT + 2, "nap", "1000", socket_extra=access)}, (LO, HI)) as d:
        d.start()
        check(talk_from("127.0.0.9", PORT + 2) == b"", "127.0.0.9 is outside the allow list")
        check(talk_from("127.0.0.3", PORT + 2) == b"", "127.0.0.3 is denied")
        d.wait_log("not in allow list")
        d.wait_log("denied by deny list")
        check("START" not in d.log(), "a refused connection must not spawn anything")
        outs = parallel(lambda i: talk_from("127.0.0.1" if i < 3 else "127.0.0.2", PORT + 2), 4)
        served_1 = sum(1 for o in outs[:3] if o.startswith(b"uid="))
        check(served_1 == 2, f"per-source limit 2: {served_1} of 3 served from 127.0.0.1")
        check(outs[3].startswith(b"uid="), "another source is not limited")
        check(re.search(r"REFUSE probe peer=127\.0\.0\.1:\d+ reason=\"max_connections_per_source reached\"", d.log()),
              d.log())
        d.stop_clean()


if __name__ == "__main__":
    main([test_500_connections_at_once_against_max_connections_16, test_pool_of_4_uids_with_10_concurrent_clients,
          test_allow_deny_and_per_source])
