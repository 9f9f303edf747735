"""End of an instance: daemonised children die, IPC objects are removed, crashing and
misbehaving services are reaped and logged, and every UID comes back."""
import os
import re
import socket
import time
from harness import (ZYGOTES_PER_SERVICE, Superd, check, fields, ipc_owned, main, mqueues, poll_until,
                     service as svc, talk_tcp, uids_of_processes)

LO, HI = 72000, 72099
PORT = 22000


def test_a_daemonised_child_does_not_outlive_its_instance():
    with Superd("daemon", {"probe": svc(PORT, "daemon")}, (LO, HI)) as d:
        d.start()
        out = talk_tcp(PORT).decode()
        uid = int(re.search(r"uid=(\d+)", out).group(1))
        d.wait_log("EXIT probe")
        # The grandchild called setsid() and never exits by itself: it must be gone now.
        check(poll_until(lambda: not uids_of_processes(uid, uid), 5),
              f"a process of uid {uid} survived: {uids_of_processes(uid, uid)}")
        d.stop_clean()


def test_ipc_objects_are_removed_from_the_host():
    with Superd("ipc", {"probe": svc(PORT + 1, "ipc")}, (LO, HI)) as d:
        d.start()
        out = talk_tcp(PORT + 1).decode()
        f = fields(out)
        check(int(f["shm"]) >= 0 and int(f["sem"]) >= 0 and int(f["msg"]) >= 0, f"probe could not create IPC: {out}")
        check("failed" not in out, out)
        uid = int(f["uid"])
        d.wait_log("EXIT probe")
        check(poll_until(lambda: not ipc_owned(uid, uid), 5),
              f"IPC objects of uid {uid} survive: {ipc_owned(uid, uid)}")
        check(not os.path.exists(f"/dev/shm/{f['posix']}"), "POSIX shm file survives")
        check(f["mq"] and "(failed)" not in f["mq"], f"probe could not create a message queue: {out}")
        check(f["mq"] not in [name for name, _, _ in mqueues()], f"mqueue {f['mq']} survives its instance")
        d.stop_clean()


def test_misbehaving_services_are_reaped_and_logged():
    with Superd("misbehave", {
        "quick": svc(PORT + 2, "exit", "3"),
        "segv": svc(PORT + 3, "segv"),
        "noread": svc(PORT + 4, "noread", extra='runtime_max = "1s"\ntimeout_stop = "500ms"'),
    }, (LO, HI)) as d:
        d.start()
        check(talk_tcp(PORT + 2) == b"", "exit-at-once service sends nothing")
        d.wait_log("EXIT quick")
        check(re.search(r"EXIT quick serial=\d+ peer=127\.0\.0\.1:\d+ uid=\d+ pid=\d+ duration=[\d.]+s status=3",
                        d.log()), d.log())
        talk_tcp(PORT + 3)
        d.wait_log("EXIT segv")
        check("signal=SIGSEGV" in d.log(), d.log())
        t0 = time.time()
        talk_tcp(PORT + 4, send=b"x" * 10, shutdown=False, timeout=10)
        took = time.time() - t0
        d.wait_log("EXIT noread")
        check(0.9 < took < 5, f"runtime_max=1s should end the instance after ~1.5s, took {took:.2f}s")
        check("TIMEOUT noread" in d.log() and "signal=SIGKILL" in d.log(), d.log())
        # A client that connects and closes at once.
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", PORT + 2))
            s.close()
        d.wait_log("EXIT quick", 6)
        check(d.proc.poll() is None, "superd must still run")
        d.stop_clean()


def test_an_exec_that_disappears_after_start_is_reported_and_the_uid_released():
    with Superd("vanish", {"probe": svc(PORT + 5, "id")}, (LO, LO + 1)) as d:
        d.start()
        os.rename(d.probe, d.probe + ".away")
        for _ in range(4):  # more attempts than UIDs: each failure must return its UID
            check(talk_tcp(PORT + 5) == b"", "nothing is served without a program")
        d.wait_log("FAIL probe", 4)
        check(re.search(r"FAIL probe serial=\d+ peer=127\.0\.0\.1:\d+ uid=\d+: step exec failed: ENOENT", d.log()),
              d.log())
        os.rename(d.probe + ".away", d.probe)
        out = talk_tcp(PORT + 5).decode()
        check(out.startswith("uid="), f"service works again: {out!r}\n{d.log()}")
        check("pool exhausted" not in d.log(), "the failed spawns leaked UIDs")
        d.stop_clean()


def test_a_killed_zygote_is_replaced():
    with Superd("zygote", {"probe": svc(PORT + 6, "id")}, (LO, HI)) as d:
        d.start()
        check(talk_tcp(PORT + 6).decode().startswith("uid="), "serves before")
        d.wait_log("EXIT probe")
        kids = d.zygotes()
        zygotes = ZYGOTES_PER_SERVICE
        check(len(kids) == zygotes, f"{zygotes} zygotes (one per CPU, at most 4), no live instance: {kids}")
        for k in kids:
            os.kill(k, 9)
        time.sleep(0.2)
        for _ in range(zygotes + 1):  # every slot gets a request: each finds its zygote gone
            out = talk_tcp(PORT + 6).decode()
            check(out.startswith("uid="), f"still serving after its zygotes were killed: {out!r}\n{d.log()}")
        check("zygote" in d.log() and "starting a new one" in d.log(), d.log())
        check("(pid -1)" not in d.log(), f"a zygote's death is logged with its real pid:\n{d.log()}")
        d.stop_clean()


if __name__ == "__main__":
    main([test_a_daemonised_child_does_not_outlive_its_instance, test_ipc_objects_are_removed_from_the_host,
          test_misbehaving_services_are_reaped_and_logged,
          test_an_exec_that_disappears_after_start_is_reported_and_the_uid_released,
          test_a_killed_zygote_is_replaced])
