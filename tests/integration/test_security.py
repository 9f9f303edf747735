"""Regression tests for the holes an attack found (issue 9): a POSIX queue that reached the next
holder of a recycled UID, a pool locked by IPC objects handed to its UIDs, a SIGBUS on a full
runtime filesystem, unbounded tmpfs and process counts, a wait-mode respawn loop and a listener
an instance shut down, a lease table every instance could read, a slow orphan sweep, and idle
control connections. Each test fails on the code before the fix."""
import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time

from harness import Superd, check, main, mqueues, service as svc, talk_tcp, uids_of_processes, wait_until

PORT = 12000
NOBODY = 65534


def sysv_msg_ids_in(lo, hi):
    with open("/proc/sysvipc/msg") as f:
        lines = f.read().splitlines()
    cols = lines[0].split()
    out = []
    for line in lines[1:]:
        v = dict(zip(cols, line.split()))
        if any(lo <= int(v[c]) <= hi for c in ("uid", "gid", "cuid", "cgid")):
            out.append(int(v["msqid"]))
    return out


def remove_msgs(lo, hi):
    for i in sysv_msg_ids_in(lo, hi):
        subprocess.run(["ipcrm", "-q", str(i)], capture_output=True)


@contextlib.contextmanager
def msgs_removed_at_end(lo, hi):
    """The queues of [lo, hi] that a test planted are removed when it ends, failed or not."""
    try:
        yield
    finally:
        remove_msgs(lo, hi)


@contextlib.contextmanager
def closed_at_end(conns):
    """Every socket in `conns` (the list it yields) is closed when the test ends, failed or not."""
    try:
        yield conns
    finally:
        for c in conns:
            c.close()


@contextlib.contextmanager
def uids_killed_at_end(lo, hi):
    """Processes of [lo, hi] still there when the test ends (orphans it made, if it failed before
    the sweep) are killed, by PID."""
    try:
        yield
    finally:
        for pid in uids_of_processes(lo, hi):
            os.kill(pid, signal.SIGKILL)


def status_json(d):
    r = d.cli("status", "--json")
    check(r.returncode == 0, f"superd status: {r.stderr}")
    return json.loads(r.stdout)


def test_a_message_queue_does_not_reach_the_next_holder_of_the_uid():
    """One UID in the pool: the second connection gets the UID the first one had."""
    lo = hi = 88000
    with Superd("sec-mq", {"put": svc(PORT, "mq-put", "/secret-q"), "get": svc(PORT + 1, "mq-get", "/secret-q")},
                (lo, hi)) as d:
        d.start()
        out = talk_tcp(PORT).decode()
        check(out == f"mq-put ok uid={lo}\n", f"the first instance left a message: {out!r}")
        d.wait_log("EXIT put")
        wait_until(lambda: not d.lease_records(), 5, "the UID to come back")
        out = talk_tcp(PORT + 1).decode()
        check(f"uid={lo}" in out, f"the second connection has the recycled UID: {out!r}")
        check(out == f"mq-get ENOENT uid={lo}\n", f"the queue reached the next holder of the UID: {out!r}")
        check(not [q for q in mqueues() if q[1] == lo], f"a queue of uid {lo} survives: {mqueues()}")
        d.stop_clean()


def test_ipc_objects_handed_to_pool_uids_are_removed_not_blocking():
    """As nobody: a message queue handed (IPC_SET) to every UID of the pool. The census removes
    them, names the creator once, and connections are served."""
    lo, hi = 88100, 88119
    with Superd("sec-lock", {"id": svc(PORT + 2, "id")}, (lo, hi)) as d, msgs_removed_at_end(lo, hi):
        d.start()
        r = subprocess.run([d.probe, "give-msg", str(lo), str(hi - lo + 1)], user=NOBODY, group=NOBODY,
                           capture_output=True, text=True, timeout=10)
        check(r.stdout == f"given {hi - lo + 1}\n", f"the attack ran: {r.stdout!r} {r.stderr!r}")
        # The census runs every 10 s: after it, every UID of the pool must still be leasable.
        time.sleep(11)
        for i in range(hi - lo + 1):
            out = talk_tcp(PORT + 2).decode()
            check(out.startswith("uid="), f"connection {i} served despite the attack: {out!r}\n{d.log()[-2000:]}")
        check("pool exhausted" not in d.log(), d.log()[-2000:])
        check(not sysv_msg_ids_in(lo, hi), "the handed-over queues are removed")
        check(d.log().count(f"census: uid {NOBODY} gave") == 1, "the creator is named once")
        d.stop_clean()


def test_status_reports_blocked_uids_and_why():
    lo, hi = 88200, 88209
    with Superd("sec-blocked", {"id": svc(PORT + 3, "id")}, (lo, hi)) as d, msgs_removed_at_end(lo, hi):
        # An object a pool UID created itself (not handed over): that UID is blocked, not cleaned.
        r = subprocess.run([d.probe, "give-msg", str(lo), "1"], user=lo, group=lo, capture_output=True, text=True,
                           timeout=10)
        check(r.stdout == "given 1\n", r.stdout + r.stderr)
        d.start()
        pool = status_json(d)["pool"]
        check(pool.get("blocked") == 1 and pool.get("free") == hi - lo, f"one UID blocked, the rest free: {pool}")
        check(pool.get("blocked_by") == {"foreign-ipc": 1}, f"why: {pool}")
        check(pool.get("blocked_sample") == [{"uid": lo, "why": ["foreign-ipc"]}], f"which: {pool}")
        text = d.cli("status").stdout
        check(re.search(r"1 blocked \(foreign-ipc 1\)", text), f"status text names the blocked UIDs: {text}")
        remove_msgs(lo, hi)
        d.stop_clean()


class Tmpfs:
    """A small tmpfs mounted as the runtime root, so the lease table's filesystem can be full."""

    def __init__(self, path, size):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path], check=True)
        self.path = path

    def fill(self):
        fd = os.open(os.path.join(self.path, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(1 << 16):  # bounded: 4 GiB at most
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)

    def close(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def test_a_runtime_filesystem_too_small_for_the_lease_table_refuses_start():
    lo, hi = 1_000_000, 1_099_999  # a 6.4 MB table and a 4.8 MB names file, on a 1 MB tmpfs
    with (Superd("sec-small", {"id": svc(PORT + 4, "id")}, (lo, hi)) as d,
          contextlib.closing(Tmpfs(os.path.join(d.root, "run"), "1m"))):
        data = d.start(expect_ready=False)
        check(data != b"READY\n", "superd started on a filesystem that cannot hold its lease table")
        rc = d.wait_exit(timeout=10)
        check(rc != 0, f"exit status {rc}")
        check(re.search(r"cannot allocate the lease table for 100000 UIDs in .*: No space left on device", d.log()),
              d.log())


def test_a_full_runtime_filesystem_does_not_crash_superd():
    """The attack: the filesystem fills up while superd runs; the 63rd lease's record fell on a
    page the filesystem could not back, and the store raised SIGBUS."""
    lo, hi = 88300, 88399
    with (Superd("sec-full", {"id": svc(PORT + 5, "id")}, (lo, hi)) as d,
          contextlib.closing(Tmpfs(os.path.join(d.root, "run"), "2m")) as fs):
        d.start()
        fs.fill()
        for i in range(80):  # leases go out in ascending UID order: past the table's first page
            out = talk_tcp(PORT + 5).decode()
            check(out.startswith("uid="), f"connection {i} on a full runtime filesystem: {out!r}")
            check(d.proc.poll() is None, f"superd died: exit {d.proc.returncode}\n{d.log()[-2000:]}")
        d.stop_clean()


def test_private_tmpfs_mounts_share_one_budget():
    with Superd("sec-budget", {
        "small": svc(PORT + 6, "fill", "400", "/tmp", "/var/tmp", "/dev/shm", extra='private_tmp_size = "1M"'),
    }, (88400, 88449)) as d:
        d.start()
        out = talk_tcp(PORT + 6).decode()
        check(out == "/tmp ok\n/var/tmp ok\n/dev/shm ENOSPC\n",
              f"/tmp, /var/tmp and /dev/shm share one 1M budget: {out!r}")
        d.stop_clean()


def test_an_instance_is_bounded_by_default():
    with Superd("sec-bounds", {
        "big": svc(PORT + 7, "fill", "70000", "/tmp"),
        "limits": svc(PORT + 8, "rlimits"),
        "own": svc(PORT + 9, "rlimits", extra="limits = { nproc = 77 }"),
    }, (88450, 88499)) as d:
        d.start()
        out = talk_tcp(PORT + 7, timeout=30).decode()
        check(out == "/tmp ENOSPC\n", f"the default budget (64M) stops a 70M file: {out!r}")
        check(talk_tcp(PORT + 8).decode() == "nproc 512 512\n", "limits.nproc defaults to 512")
        check(talk_tcp(PORT + 9).decode() == "nproc 77 77\n", "a configured limits.nproc wins")
        d.stop_clean()


def test_a_wait_mode_service_that_exits_at_once_backs_off():
    truth = svc(PORT + 10, program="/bin/true", socket_extra="accept = false")
    with Superd("sec-respawn", {"truth": truth}, (88500, 88509)) as d:
        d.start()
        pending = socket.create_connection(("127.0.0.1", PORT + 10))  # never taken: /bin/true ignores it
        time.sleep(3)
        starts = d.log().count("START truth ")
        check(1 <= starts <= 6, f"{starts} starts in 3 s for an instance that exits at once")
        check("in a row" in d.log(), d.log()[-1500:])
        pending.close()
        d.stop_clean()


def test_a_listener_an_instance_shut_down_is_replaced():
    shut = svc(PORT + 11, "shut-listener", socket_extra="accept = false")
    with Superd("sec-shut", {"shut": shut}, (88510, 88519)) as d:
        d.start()
        try:
            talk_tcp(PORT + 11, timeout=5)
        except ConnectionResetError:
            pass  # queued when the instance shut the listener down: the kernel resets it (a race)
        d.wait_log("EXIT shut")

        def connects():
            try:
                socket.create_connection(("127.0.0.1", PORT + 11), timeout=2).close()
                return True
            except OSError:
                return False
        wait_until(connects, 5, f"port {PORT + 11} to listen again after the instance shut its listener down")
        d.wait_log("START shut", 2)
        check("listening again on a fresh socket" in d.log(), d.log()[-1500:])
        d.stop_clean()


def test_the_lease_table_is_root_only_and_hidden_from_instances():
    lo, hi = 88520, 88529
    with Superd("sec-table", {
        "secretsvc": svc(PORT + 12, "sleep", "30"),
        "look": svc(PORT + 13, "ls", "@ROOT@/run/superd"),
        "read": svc(PORT + 14, "cat", "@ROOT@/run/superd/dynamic-uid/leases",
                    "@ROOT@/run/superd/dynamic-uid/names"),
    }, (lo, hi)) as d:
        d.start()
        hold = socket.create_connection(("127.0.0.1", PORT + 12))
        d.wait_log("START secretsvc")
        table = os.path.join(d.root, "run", "superd", "dynamic-uid", "leases")
        names = os.path.join(d.root, "run", "superd", "dynamic-uid", "names")
        check(stat.S_IMODE(os.stat(table).st_mode) == 0o600, f"lease table mode {oct(os.stat(table).st_mode)}")
        check(stat.S_IMODE(os.stat(names).st_mode) == 0o644, "the names file is world-readable")
        with open(names, "rb") as f:
            blob = f.read()
        uid = d.lease_records()[0][0]
        check(f"superd-{uid}".encode() in blob, "the names file holds the live lease's user name")
        check(b"secretsvc" not in blob, "the names file holds no service names")
        out = talk_tcp(PORT + 13).decode()
        check(out == f"{d.root}/run/superd EACCES\n", f"an instance sees superd's runtime directory: {out!r}")
        out = talk_tcp(PORT + 14).decode()
        check("secretsvc" not in out and out.count("EACCES") == 2, f"an instance reads the lease table: {out!r}")
        hold.close()
        d.stop_clean()


def test_orphans_of_a_killed_superd_are_swept_while_it_serves():
    lo, hi = 88600, 88999
    n = 300
    hold = svc(PORT + 15, "sleep", "3600", socket_extra=f"max_connections = {n}")
    with (uids_killed_at_end(lo, hi),
          Superd("sec-orphans", {"hold": hold, "id": svc(PORT + 16, "id")}, (lo, hi)) as d,
          closed_at_end([]) as conns):
        d.start()
        for _ in range(n):
            conns.append(socket.create_connection(("127.0.0.1", PORT + 15)))
        d.wait_log("START hold", n, timeout=60)
        wait_until(lambda: len(set(uids_of_processes(lo, hi).values())) == n, 30, f"{n} live instances")
        d.kill()
        t0 = time.time()
        d.start()
        ready = time.time() - t0
        check(ready < 3, f"ready {ready:.1f}s after a restart with {n} orphans")
        check(talk_tcp(PORT + 16).decode().startswith("uid="), "serving while the sweep runs")
        d.wait_log("orphaned lease", n, timeout=20)
        check(not uids_of_processes(lo, hi), f"orphans survive: {len(uids_of_processes(lo, hi))}")
        check(d.log().count(": swept") == n, f"every orphan swept:\n{d.log()[-1500:]}")
        for c in conns:
            c.close()
        d.stop_clean()


def test_idle_control_connections_are_capped_and_timed_out():
    with Superd("sec-control", {"id": svc(PORT + 17, "id")}, (88530, 88539)) as d, closed_at_end([]) as conns:
        d.start()
        path = os.path.join(d.root, "run", "superd", "control")
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            s.settimeout(0)
            conns.append(s)

        def closed(s):
            try:
                return s.recv(16) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True
        time.sleep(0.5)
        early = sum(closed(s) for s in conns)
        check(early >= 30, f"{early} of 100 idle control connections closed past the cap")
        check(status_json(d)["pool"]["size"] == 10, "status still answers")
        wait_until(lambda: all(closed(s) for s in conns), 10, "idle control connections to time out")
        d.stop_clean()


if __name__ == "__main__":
    main([test_a_message_queue_does_not_reach_the_next_holder_of_the_uid,
          test_ipc_objects_handed_to_pool_uids_are_removed_not_blocking,
          test_status_reports_blocked_uids_and_why,
          test_a_runtime_filesystem_too_small_for_the_lease_table_refuses_start,
          test_a_full_runtime_filesystem_does_not_crash_superd,
          test_private_tmpfs_mounts_share_one_budget,
          test_an_instance_is_bounded_by_default,
          test_a_wait_mode_service_that_exits_at_once_backs_off,
          test_a_listener_an_instance_shut_down_is_replaced,
          test_the_lease_table_is_root_only_and_hidden_from_instances,
          test_orphans_of_a_killed_superd_are_swept_while_it_serves,
          test_idle_control_connections_are_capped_and_timed_out])
