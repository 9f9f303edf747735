"""Escape attempts from inside an instance (issue 14, item 4), each asserting the refusal: new
namespaces by unshare, clone and clone3; io_uring, bpf, perf_event_open, userfaultfd and the
keyrings; ptrace, process_vm_readv, /proc/PID/environ, pidfd_open and kill of another
instance, of a zygote and of superd; TIOCSTI on superd's controlling terminal; superd's own
abstract listener and its control socket; a symlink planted in a shared state directory; a
fork bomb; a full /tmp; a PROXY v2 TLV that would add a line to the environment. The attacks are the probe's escape verbs (tests/helpers/probe_escape.c)."""
import os
import re
import socket
import stat
import subprocess
import sys
import time

from harness import Superd, check, fields, main, poll_until, read_all, service as svc, talk_tcp, uids_of_processes

LO, HI = 102000, 102199
PORT = 17900
SECRET = "superd-escape-secret-7731"
REFUSED = {"EPERM", "EACCES", "ESRCH", "ENOENT"}


def lines(b):
    """"NAME VALUE" lines as a dict (the last word is the value)."""
    return dict(l.rsplit(" ", 1) for l in b.decode(errors="replace").splitlines() if " " in l)


def test_namespaces_and_kernel_surfaces_are_refused():
    err = 'system_call_error_number = "EACCES"'  # the filter's answer, told apart from the kernel's EPERM
    with Superd("esc-ns", {"ns": svc(PORT, "namespaces", extra=err), "kern": svc(PORT + 1, "kernel", extra=err)},
                (LO, HI)) as d:
        d.start()
        r = lines(talk_tcp(PORT))
        for call in ("unshare_user", "unshare_user_ns", "clone_user"):
            check(r.get(call) == "EACCES", f"{call}: refused by the filter: {r}")
        for call in ("clone3_user", "clone3_pid", "clone3_net"):
            check(r.get(call) == "ENOSYS", f"{call}: clone3 is refused whole (its flags are out of sight): {r}")
        r = lines(talk_tcp(PORT + 1))
        check(r.get("io_uring_setup") == "ENOSYS", f"io_uring: {r}")
        for call in ("bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key"):
            check(r.get(call) == "EACCES", f"{call}: refused by the filter: {r}")
        d.stop_clean()


def pids_of_uid(uid):
    return sorted(p for p, u in uids_of_processes(uid, uid).items())


def test_other_instances_zygotes_and_superd_are_out_of_reach():
    with Superd("esc-reach", {"victim": svc(PORT + 2, "sleep", "60"), "attacker": svc(PORT + 3, "reach")},
                (LO, HI)) as d:
        d.start(env={**os.environ, "SECRET_TOKEN": SECRET})
        zygotes = d.zygotes()
        check(zygotes, "superd has zygotes")
        with socket.create_connection(("127.0.0.1", PORT + 2), timeout=10) as victim:
            vf = victim.makefile("rb")
            uid = int(fields(vf.readline().decode())["uid"].split(",")[0])
            vpids = pids_of_uid(uid)
            check(vpids, f"the victim instance runs as {uid}")
            targets = [d.proc.pid, *zygotes, *vpids]
            out = talk_tcp(PORT + 3, send=(" ".join(map(str, targets)) + "\n").encode()).decode(errors="replace")
            for pid in targets:
                for attack in ("ptrace", "process_vm_readv", "environ", "kill"):
                    m = re.search(rf"^{attack} {pid} (\S+)$", out, re.M)
                    check(m and m.group(1) in REFUSED, f"{attack} of {pid} must be refused: {out}")
                check(f"pidfd_open ok" not in out, f"a pidfd for a process outside: {out}")
            check(SECRET not in out and "environ-bytes" not in out, f"superd's environment leaked: {out}")
            visible = re.search(r"^visible(.*)$", out, re.M).group(1).split()
            check(not set(visible) & set(map(str, targets)) and len(visible) <= 2,
                  f"the attacker sees only its own PID namespace: {visible}")
            # Everyone is still there: superd, its zygotes, the victim.
            check(d.proc.poll() is None, "superd was killed")
            check(all(os.path.exists(f"/proc/{p}") for p in zygotes), f"a zygote was killed: {zygotes}")
            check(pids_of_uid(uid) == vpids, f"the victim was killed: {vpids} -> {pids_of_uid(uid)}")
        d.stop_clean()


def test_superd_abstract_listener_is_out_of_reach():
    name = f"superd-esc-abs-{os.getpid()}"
    with Superd("esc-abs", {"abs": svc(f"@{name}", "id"), "attacker": svc(PORT + 4, "abstract", name, "connect")},
                (LO, HI)) as d:
        d.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # it is there: the host reaches it
            s.settimeout(10)
            s.connect("\0" + name)
            check(read_all(s).startswith(b"uid="), "the host is served on superd's abstract listener")
        out = talk_tcp(PORT + 4)
        check(out == b"connect EPERM\n", f"an instance must not reach superd's abstract listener: {out!r}")
        d.stop_clean()


def test_the_control_socket_cannot_be_used_from_inside():
    with Superd("esc-ctl", {"attacker": svc(PORT + 5, "control", "@ROOT@/run/superd/control")}, (LO, HI)) as d:
        d.start()
        path = os.path.join(d.root, "run", "superd", "control")
        check(stat.S_ISSOCK(os.stat(path).st_mode), f"the control socket is at {path}")
        out = talk_tcp(PORT + 5).decode()
        m = re.match(r"connect (\S+)\n$", out)
        check(m and m.group(1) in REFUSED, f"an instance must not reach the control socket: {out!r}")
        d.stop_clean()


# Execs superd (argv[2:]) as a session leader whose controlling terminal is the pty argv[1].
CTTY = ("import fcntl, os, sys, termios\nos.setsid()\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.ioctl(fd, termios.TIOCSCTTY, 0)\nos.close(fd)\nos.execv(sys.argv[2], sys.argv[2:])\n")


def test_tiocsti_reaches_no_terminal():
    """superd run from a terminal (an operator trying it out): TIOCSTI on the controlling terminal
    would type a command into the operator's shell (dev.tty.legacy_tiocsti = 1 here)."""
    import tty
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        os.set_blocking(slave, False)
        with Superd("esc-tty", {"attacker": svc(PORT + 6, "tiocsti")}, (LO, HI)) as d:
            d.start(wrapper=(sys.executable, "-c", CTTY, os.ttyname(slave)))
            with open(f"/proc/{d.proc.pid}/stat") as f:
                tty_nr = int(f.read().rsplit(")", 1)[1].split()[4])
            check(tty_nr == os.stat(os.ttyname(slave)).st_rdev, "superd runs with the pty as its terminal")
            out = talk_tcp(PORT + 6).decode()
            try:
                typed = os.read(slave, 4096)
            except BlockingIOError:
                typed = b""
            check(b"SUPERD-INJECTED" not in typed, f"a line was typed into superd's terminal: {typed!r} ({out!r})")
            r = lines(out.encode())
            check(len(r) == 4, f"four attempts reported: {out!r}")
            for target, result in r.items():
                check(result != "ok", f"{target}: TIOCSTI must fail: {out!r}")
            d.stop_clean()
    finally:
        os.close(master)
        os.close(slave)


def test_a_symlink_planted_in_a_shared_state_directory():
    """An instance plants symlinks in the state directory it shares with the next instances: to a
    root-only file, to a copy of /etc/shadow (root:shadow 0640), to another service's directory.
    The next instance (another UID, the same group) reads nothing through them; superd's
    re-grouping of the tree at the next start changes the links, never what they point to. (Not
    the real /etc/shadow: a superd that followed the link would re-group it, as a mutation did.)"""
    with Superd("esc-link", {}, (LO, HI)) as d:
        victim, shadow = os.path.join(d.root, "victim"), os.path.join(d.root, "shadow")
        for path, text, gid, mode in ((victim, "root-only\n", 0, 0o600), (shadow, "root:*:1:0:99999:7:::\n", 42, 0o640)):
            with open(path, "w") as f:
                f.write(text)
            os.chown(path, 0, gid)
            os.chmod(path, mode)
        other = "@ROOT@/lib/private/other/secret"
        d.write_service("shared", svc(PORT + 7, "plant", "victim", victim, "shadow", shadow, "other", other,
                                      extra='state_directory = "shared"'))
        d.write_service("reader", svc(PORT + 8, "cat", *(f"@ROOT@/lib/shared/{n}" for n in ("victim", "shadow", "other")),
                                      extra='state_directory = "shared"'))
        d.write_service("other", svc(PORT + 9, "id", extra='state_directory = "other"'))
        d.start()
        with open(os.path.join(d.root, "lib", "private", "other", "secret"), "w") as f:
            f.write("other-service\n")
        before = {p: os.stat(p) for p in (victim, shadow)}
        out = talk_tcp(PORT + 7).decode()
        check(out.count(" ok\n") == 3, f"the links are planted: {out!r}")

        def read_through():
            got = talk_tcp(PORT + 8).decode()
            check("root-only" not in got and "other-service" not in got and "root:" not in got,
                  f"the next instance read through a planted link: {got!r}")
            for n in ("victim", "shadow", "other"):
                m = re.search(rf"^\S+/{n} (\S+)$", got, re.M)
                check(m and m.group(1) in REFUSED, f"{n}: {got!r}")

        read_through()
        # The next start re-groups the tree when its group is not the service's (here: forced).
        shared = os.path.join(d.root, "lib", "private", "shared")
        check(d.stop() == 0, "exit 0")
        os.chown(shared, 0, 0)
        d.start()
        regrouped = os.stat(shared).st_gid
        check(regrouped != 0, "the tree was re-grouped at start")
        check(os.lstat(os.path.join(shared, "victim")).st_gid == regrouped, "the link itself was re-grouped")
        for p, st in before.items():
            now = os.stat(p)
            check((now.st_uid, now.st_gid, now.st_mode) == (st.st_uid, st.st_gid, st.st_mode),
                  f"superd followed a planted link to {p}: {oct(st.st_mode)} {st.st_uid}:{st.st_gid} -> "
                  f"{oct(now.st_mode)} {now.st_uid}:{now.st_gid}")
        read_through()
        d.stop_clean()


def test_a_fork_bomb_is_bounded_and_superd_keeps_serving():
    with Superd("esc-bomb", {"bomb": svc(PORT + 10, "forkbomb", "100000", "4000"), "id": svc(PORT + 11, "id")},
                (LO, HI)) as d:
        d.start()
        with socket.create_connection(("127.0.0.1", PORT + 10), timeout=60) as bomb:
            first = bomb.makefile("rb").readline().decode()
            m = re.match(r"forkbomb (\S+) made=\d+ uid=(\d+)", first)
            check(m and m.group(1) == "EAGAIN", f"fork fails at last: {first!r}")
            # Every link of the chains forks on until it fails too: the UID is at its limit now.
            live = len(pids_of_uid(int(m.group(2))))
            check(400 <= live <= 512, f"{live} processes: the bomb stops at limits.nproc (512 by default)")
            t0 = time.monotonic()
            out = talk_tcp(PORT + 11, timeout=10).decode()
            took = time.monotonic() - t0
            check(out.startswith("uid=") and took < 5, f"another connection served in {took:.1f}s: {out!r}")
            d.wait_log("EXIT bomb", timeout=30)
        wait_until_gone = poll_until(lambda: not uids_of_processes(LO, HI), 10)
        check(wait_until_gone, f"the bomb's processes are reaped: {len(uids_of_processes(LO, HI))} left")
        d.stop_clean()


def test_a_full_tmp_stays_inside_its_instance():
    with Superd("esc-tmp", {"fill": svc(PORT + 12, "fill-hold", "/tmp", "3000"),
                            "look": svc(PORT + 13, "ls", "/tmp", "/var/tmp", "/dev/shm")}, (LO, HI)) as d:
        d.start()
        with socket.create_connection(("127.0.0.1", PORT + 12), timeout=60) as fill:
            first = fill.makefile("rb").readline().decode()
            m = re.match(r"/tmp (\S+) mib=(\d+)", first)
            check(m and m.group(1) == "ENOSPC" and 56 <= int(m.group(2)) <= 64,
                  f"/tmp is full at private_tmp_size (64M): {first!r}")
            check(talk_tcp(PORT + 13).decode() == "", "another instance's /tmp is empty while it is full")
            check(d.cli("status").returncode == 0, "superd answers status")
        d.wait_log("EXIT fill")
        check(talk_tcp(PORT + 13).decode() == "", "the next instance's /tmp is empty")
        d.stop_clean()


def test_a_proxy_tlv_with_a_newline_reaches_no_environment():
    """A trusted proxy relays a client's v2 authority TLV "evil\\nINJECTED=1" (a client picks its SNI):
    dropped, not passed on; a printable TLV of the same header still is."""
    from test_proxy import env_echo, split, talk, tlv, v2
    allow = 'proxy_protocol = "v2"\nproxy_allow = ["127.0.0.1"]'
    with Superd("esc-tlv", {"web": env_echo(PORT + 15, allow)}, (LO, HI)) as d:
        d.start()
        tlvs = tlv(0x02, b"evil\nINJECTED=1") + tlv(0x05, b"id-9")
        env, echoed = split(talk(PORT + 15, v2("192.0.2.7", "198.51.100.9", 4000, 443, tlvs) + b"hi"))
        check(env.get("PROXY_UNIQUE_ID") == "id-9" and echoed == b"hi", f"the header was read: {env} {echoed!r}")
        check("INJECTED" not in env and "PROXY_AUTHORITY" not in env, f"the non-printable TLV was passed on: {env}")
        d.stop_clean()


if __name__ == "__main__":
    main([test_namespaces_and_kernel_surfaces_are_refused, test_other_instances_zygotes_and_superd_are_out_of_reach,
          test_superd_abstract_listener_is_out_of_reach, test_the_control_socket_cannot_be_used_from_inside,
          test_tiocsti_reaches_no_terminal, test_a_symlink_planted_in_a_shared_state_directory,
          test_a_fork_bomb_is_bounded_and_superd_keeps_serving, test_a_full_tmp_stays_inside_its_instance,
          test_a_proxy_tlv_with_a_newline_reaches_no_environment])
