"""SIGTERM with live instances, and a superd killed with SIGKILL whose orphans the next superd
finds, kills and cleans before reusing their UIDs."""
import json
import os
import socket
import time
from harness import Superd, check, main, service, uids_of_processes

LO, HI = 75000, 75099
PORT = 25000


def open_conns(port, n):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        conns.append(s)
    return conns


def test_sigterm_ends_live_instances_and_cleans_every_uid():
    term = service([PORT, "@ROOT@/term.sock"], "sleep", "3600", extra='timeout_stop = "1s"')
    with Superd("term", {"probe": term}, (LO, HI)) as d:
        d.start()
        conns = open_conns(PORT, 5)
        d.wait_log("START probe", 5)
        check(len(set(uids_of_processes(LO, HI).values())) == 5, "five live instances")
        st = d.cli("status", "--json")
        j = json.loads(st.stdout)
        check(len(j["instances"]) == 5 and j["pool"]["held"] == 5, f"status: {st.stdout}")
        check({i["uid"] for i in j["instances"]} == set(uids_of_processes(LO, HI).values()), st.stdout)
        check(j["services"][0]["live"] == 5 and j["services"][0]["listen"][0] == f"127.0.0.1:{PORT}", st.stdout)
        human = d.cli("status")
        check(human.returncode == 0 and "5 held" in human.stdout and "probe[" in human.stdout, human.stdout)
        t0 = time.time()
        rc = d.stop()
        check(rc == 0, f"exit {rc}")
        check(time.time() - t0 < 10, "shutdown took too long")
        check(d.log().count("EXIT probe") == 5, d.log())
        check("stopped: every instance ended" in d.log(), d.log())
        d.assert_clean(timeout=2)
        check(not os.path.exists(os.path.join(d.root, "term.sock")), "UNIX socket file left behind")
        for c in conns:
            c.close()


def test_orphans_of_a_killed_superd_are_cleaned_by_the_next():
    services = {"probe": service(PORT + 1, "sleep", "3600"), "ipc": service(PORT + 2, "ipc")}
    with Superd("orphan", services, (LO, HI)) as d:
        d.start()
        conns = open_conns(PORT + 1, 3)
        d.wait_log("START probe", 3)
        orphan_uids = set(uids_of_processes(LO, HI).values())
        check(len(orphan_uids) == 3, f"three live instances: {orphan_uids}")
        d.kill()
        time.sleep(0.2)
        check(set(uids_of_processes(LO, HI).values()) == orphan_uids, "orphans keep running after superd dies")
        check(len(d.lease_records()) == 3, f"lease records survive: {d.lease_records()}")
        d.start()
        d.wait_log("orphaned lease", 3)
        check(not uids_of_processes(LO, HI), f"orphans survive the restart: {uids_of_processes(LO, HI)}")
        for c in conns:
            c.close()
        d.stop_clean()


if __name__ == "__main__":
    main([test_sigterm_ends_live_instances_and_cleans_every_uid, test_orphans_of_a_killed_superd_are_cleaned_by_the_next])
