"""Socket flags and per-service logging, checked from inside the service and in the log files:
no_delay and keep_alive reach the accepted connection, bind_ipv6_only = "both" makes "[::]:P"
take IPv4 too, the "@" form of exec sets argv[0] (xinetd's NAMEINARGS); log_target = "file:..."
receives the service's lines with exactly the log_on_success / log_on_failure fields, and
access_times refuses outside its intervals."""
import os
import pwd
import re
import socket
import time
from harness import Superd, check, main, parallel, service, talk_tcp, wait_bytes

LO, HI = 83000, 83099
PORT = 17000  # below the ephemeral range (32768-60999) and the bench's 19001-19005

# A service in Python: argv[0] as the kernel saw it, and the socket options of fd 0.
SOCKOPTS = r'''
import socket, sys
with open("/proc/self/cmdline", "rb") as f:
    argv0 = f.read().split(b"\0")[0].decode()
s = socket.socket(fileno=0)
nd = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
ka = s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
sys.stdout.write(f"argv0={argv0} nodelay={int(bool(nd))} keepalive={int(bool(ka))}\n")
sys.stdout.flush()
s.detach()
'''


def pysvc(listen, extra_socket="", argv0=None):
    """SOCKOPTS on `listen`; with `argv0`, through the "@" form of exec."""
    if argv0:
        return service(listen, argv0, "-c", SOCKOPTS, program="@/usr/bin/python3", socket_extra=extra_socket)
    return service(listen, "-c", SOCKOPTS, program="/usr/bin/python3", socket_extra=extra_socket)


def parse(out):
    m = re.match(r"argv0=(\S+) nodelay=(\d) keepalive=(\d)\n$", out.decode(errors="replace"))
    check(m, f"not a sockopts line: {out!r}")
    return m.group(1), int(m.group(2)), int(m.group(3))


def connect_refused(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
    return False


def test_socket_flags_and_nameinargs():
    if not os.access("/usr/bin/python3", os.X_OK):
        check(False, "/usr/bin/python3 missing")
    with Superd("flags", {
        "flagged": pysvc(f"[::]:{PORT}", 'bind_ipv6_only = "both"\nno_delay = true\nkeep_alive = true',
                         argv0="in.flagged"),
        "plain": pysvc(f"[::]:{PORT + 1}"),
    }, (LO, HI)) as d:
        d.start()
        argv0, nd, ka = parse(talk_tcp(PORT, host="127.0.0.1"))
        check(argv0 == "in.flagged", f"exec = [\"@PROG\", \"in.flagged\", ...] sets argv[0]: {argv0}")
        check(nd == 1 and ka == 1, f"no_delay and keep_alive reach the connection: {nd} {ka}")
        _, nd6, ka6 = parse(talk_tcp(PORT, host="::1"))
        check(nd6 == 1 and ka6 == 1, "over IPv6 too")
        argv0, nd, ka = parse(talk_tcp(PORT + 1, host="::1"))
        check(argv0 == "/usr/bin/python3", f"plain exec: argv[0] is the program: {argv0}")
        check(nd == 0 and ka == 0, f"without the flags: {nd} {ka}")
        check(connect_refused("127.0.0.1", PORT + 1), "\"[::]:P\" stays v6-only by default")
        d.wait_log("EXIT flagged ", 2)
        d.wait_log("EXIT plain ", 1)
        d.stop_clean()


def test_log_target_file_fields_and_access_times():
    port = PORT + 10
    hh = time.localtime().tm_hour
    # An interval that excludes the present hour (it wraps over midnight when needed).
    away = f"{(hh + 2) % 24:02d}:00-{(hh + 3) % 24:02d}:00"
    with Superd("logs", {
        "tofile": service(port, "id", extra='log_target = "file:@ROOT@/log/tofile.log"\n'
                                             'log_on_success = ["HOST", "DURATION"]'),
        "quiet": service(port + 1, "id", socket_extra='deny = ["127.0.0.0/8"]',
                         extra='log_target = "file:@ROOT@/log/quiet.log"\nlog_on_failure = []'),
        "closed": service(port + 2, "id", socket_extra=f'access_times = ["{away}"]',
                          extra='log_target = "file:@ROOT@/log/closed.log"\nlog_on_failure = ["HOST", "ATTEMPT"]'),
    }, (LO, HI)) as d:
        os.makedirs(os.path.join(d.root, "log"), exist_ok=True)
        d.start()
        out = talk_tcp(port).decode()
        check(out.startswith("uid="), f"tofile serves: {out!r}")
        check(talk_tcp(port + 1) == b"", "quiet refuses 127.0.0.1 (deny)")
        check(talk_tcp(port + 2) == b"", f"closed refuses outside {away}")
        path = os.path.join(d.root, "log", "tofile.log")
        text = wait_bytes(path, b"EXIT tofile", timeout=10).decode()
        start = [line for line in text.splitlines() if "START tofile" in line]
        exit_ = [line for line in text.splitlines() if "EXIT tofile" in line]
        check(len(start) == 1 and len(exit_) == 1, f"one START and one EXIT in the file:\n{text}")
        check(re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} superd\[\d+\]: START tofile serial=1 peer=127\.0\.0\.1:\d+ uid=\d+$",
                        start[0]), f"START with HOST, without PID: {start[0]!r}")
        check(re.search(r"EXIT tofile serial=1 peer=127\.0\.0\.1:\d+ uid=\d+ duration=\d+\.\d{3}s$", exit_[0]),
              f"EXIT with HOST and DURATION, without PID and EXIT status: {exit_[0]!r}")
        check("START tofile" not in d.log(), "the lines went to the file, not to superd's log")
        closed = open(os.path.join(d.root, "log", "closed.log")).read()
        check(re.search(r"REFUSE closed peer=127\.0\.0\.1:\d+ reason=\"outside access_times", closed), closed)
        time.sleep(0.3)
        quiet = open(os.path.join(d.root, "log", "quiet.log")).read()
        check("REFUSE" not in quiet and "REFUSE quiet" not in d.log(), f"log_on_failure = [] logs no refusal: {quiet!r}")
        d.stop_clean()


def test_bad_log_target_names_the_service():
    with Superd("badlog", {"nolog": service(PORT + 20, "id", extra='log_target = "file:@ROOT@/no/such/dir/x.log"')},
                (LO, HI)) as d:
        d.start(expect_ready=False)
        rc = d.wait_exit(timeout=20)
        check(rc == 1, f"superd refuses to start: rc={rc}")
        check(re.search(r"service nolog: log_target \"file:.*/no/such/dir/x.log\": No such file", d.log()), d.log())
        d.assert_clean()


def test_a_static_user_owns_its_state_directory():
    port = PORT + 30
    keeper = service(port, "-c", "echo kept > $STATE_DIRECTORY/f && echo ok $(id -u)", program="/bin/sh",
                     extra='dynamic_user = false\nuser = "nobody"\nstate_directory = "keeper"')
    with Superd("staticdir", {"keeper": keeper}, (LO, HI)) as d:
        d.start()
        out = talk_tcp(port).decode()
        check(out == f"ok {pwd.getpwnam('nobody').pw_uid}\n", f"nobody writes its state directory: {out!r}\n{d.log()}")
        path = os.path.join(d.root, "lib", "private", "keeper", "f")
        check(open(path).read() == "kept\n", "the file is there on the host")
        check(os.stat(os.path.dirname(path)).st_uid == pwd.getpwnam("nobody").pw_uid, "owned by the user")
        d.wait_log("EXIT keeper ")
        d.stop_clean()


def test_clients_queued_while_paused_are_served_without_a_newcomer():
    """At max_connections superd stops polling; the clients that queue meanwhile must be taken
    when an instance ends, even if nobody else connects (Asio's wait sees new readiness only)."""
    port = PORT + 40
    slow = service(port, "-c", "sleep 0.3; echo served", program="/bin/sh", socket_extra="max_connections = 1")
    with Superd("queued", {"slow": slow}, (LO, HI)) as d:
        d.start()
        t0 = time.time()
        outs = parallel(lambda i: talk_tcp(port, timeout=8), 3)
        took = time.time() - t0
        check(outs == [b"served\n"] * 3, f"all three served: {outs}\n{d.log()[-2000:]}")
        check(took < 5, f"one after the other, no stall waiting for a fourth client: {took:.2f}s")
        d.wait_log("EXIT slow ", 3)
        d.stop_clean()


if __name__ == "__main__":
    main([test_socket_flags_and_nameinargs, test_log_target_file_fields_and_access_times,
          test_bad_log_target_names_the_service, test_a_static_user_owns_its_state_directory,
          test_clients_queued_while_paused_are_served_without_a_newcomer])
