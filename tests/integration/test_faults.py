"""Faults that bench/faults.py found: a superd short of file descriptors dropped the connections
past its RLIMIT_NOFILE and lost its zygotes (their answers' pidfds did not fit), and the UIDs a
killed zygote left unanswered were quarantined for good."""
import json
import os
import select
import signal
import socket
import subprocess
import time

from harness import Superd, check, main, poll_until, service

PORT = 17700


def pool(d):
    return json.loads(d.cli("status", "--json").stdout)["pool"]


def test_out_of_descriptors_connections_wait_and_none_is_lost():
    """superd with RLIMIT_NOFILE 64 (soft and hard) and 40 echo clients at
    once: the ones that do not fit wait, and each is served as served ones leave. Before, every
    connection past the limit was closed unserved (FAIL ... pipe2: EMFILE), and a zygote whose
    answer's pidfd did not fit was counted as lost, its instances quarantined and unseen."""
    with Superd("fault-fds", {"echo": service(PORT, "echo")}, (101000, 101099)) as d:
        d.start()
        # Lowered from outside once it runs (it raises its soft limit to the hard one at start).
        subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--nofile=64:64"], check=True)
        clients = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            s.sendall(b"x\n")
            s.setblocking(False)
            clients.append(s)
        state = {}  # client index -> "served" / "lost"
        deadline = time.time() + 60
        while len(state) < len(clients) and time.time() < deadline:
            waiting = {clients[i].fileno(): i for i in range(len(clients)) if i not in state}
            ready, _, _ = select.select(list(waiting), [], [], 0.5)
            for fd in ready:
                i = waiting[fd]
                try:
                    data = clients[i].recv(16)
                except OSError:
                    data = b""
                state[i] = "served" if data == b"x\n" else "lost"
                if data == b"x\n":
                    clients[i].close()  # it leaves: its instance ends, its descriptors come back
        lost = sum(1 for v in state.values() if v == "lost")
        for s in clients:
            s.close()
        check(lost == 0 and len(state) == len(clients),
              f"{lost} lost, {len(clients) - len(state)} never served of {len(clients)}\n{d.log()[-2500:]}")
        check("is gone" not in d.log(), f"a zygote was lost:\n{d.log()[-2500:]}")
        check(poll_until(lambda: pool(d)["quarantined"] == 0 and pool(d)["held"] == 0, 10),
              f"UIDs not back: {pool(d)}")
        check("out of file descriptors" in d.log(), "the shortage is logged")
        d.stop_clean()


def test_uids_a_killed_zygote_left_unanswered_come_back():
    """Both zygotes stopped, a connection queued to one of them, then both killed: the request
    is unanswered and its UID quarantined (an instance might run with it unseen). Once no
    process and no IPC object of it is left, the UID must come back within the census period
    (10 s), not stay quarantined until superd restarts."""
    with Superd("fault-zyg", {"echo": service(PORT + 1, "echo")}, (101100, 101199)) as d:
        d.start()
        zygotes = d.zygotes()
        check(zygotes, "the service has zygotes")
        for z in zygotes:
            os.kill(z, signal.SIGSTOP)
        c = socket.create_connection(("127.0.0.1", PORT + 1), timeout=10)
        time.sleep(0.3)  # the request is in a stopped zygote's socket
        for z in zygotes:
            os.kill(z, signal.SIGKILL)
        d.wait_log("the zygote died before answering")
        c.close()
        blocked = lambda: pool(d)["quarantined"] + pool(d)["blocked_by"].get("zygote-lost", 0)  # noqa: E731
        check(blocked() >= 1, f"blocked at first: {pool(d)}")
        t0 = time.time()
        back = poll_until(lambda: blocked() == 0, 15)
        check(back, f"still blocked after 15 s: {pool(d)}\n{d.log()[-2000:]}")
        check(time.time() - t0 <= 11, f"back only after {time.time() - t0:.1f} s")
        check(pool(d)["free"] == pool(d)["size"], f"every UID free again: {pool(d)}")
        check(b"x\n" == _echo(PORT + 1), "the service serves on (a new zygote)")
        d.stop_clean()


def _echo(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x\n")
        s.shutdown(socket.SHUT_WR)
        return s.recv(16)


if __name__ == "__main__":
    main([test_out_of_descriptors_connections_wait_and_none_is_lost, test_uids_a_killed_zygote_left_unanswered_come_back])
