"""Confinement beyond the filesystem, checked from inside the instance: the default deny list's
latest additions (fanotify_init, memfd_secret, modify_ldt, kcmp), the default address families
(AF_UNIX, AF_INET, AF_INET6), allow-list filters served through the zygote, and Landlock
scoping of abstract UNIX sockets and signals, between the host and an instance and between two
instances of one service."""
import os
import re
import socket
import subprocess
import threading
from harness import ZYGOTES_PER_SERVICE, Superd, check, main, service as svc, talk_tcp, uids_of_processes

LO, HI = 86000, 86079      # the dynamic range
STATIC_UID = 86090         # a static user of this file's range, outside the dynamic one
PORT = 15000
NARROW = '["@basic-io", "@file-system", "mprotect", "getrandom"]'  # enough for the probe; no @setuid, @process...


def lines(b):
    """"NAME VALUE" lines (and the probe's "Seccomp_filters:<TAB>N") as a dict."""
    return dict(l.split(None, 1) for l in b.decode().splitlines() if len(l.split(None, 1)) == 2)


def landlock_abi():
    """The kernel's Landlock ABI (landlock_create_ruleset(NULL, 0, VERSION)), or 0."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    v = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return v if v > 0 else 0


def status_field(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return None


def test_default_deny_additions_and_address_families():
    with Superd("conf", {
        "dflt": svc(PORT, "confine"),
        "allow": svc(PORT + 1, "confine", extra='system_call_filter = ["@system-service"]'),
        "fams": svc(PORT + 2, "confine", extra='restrict_address_families = ["~AF_PACKET"]'),
    }, (LO, HI)) as d:
        d.start()
        for port in (PORT, PORT + 1):
            r = lines(talk_tcp(port))
            for call in ("fanotify_init", "memfd_secret", "modify_ldt", "kcmp"):
                check(r.get(call) == "EPERM", f"{call} must be refused with EPERM (port {port}): {r}")
            for fam in ("af_unix", "af_inet", "af_inet6", "socketpair_unix"):
                check(r.get(fam) == "ok", f"{fam} sockets must still work (port {port}): {r}")
            for fam in ("af_netlink", "af_vsock"):
                check(r.get(fam) == "EAFNOSUPPORT", f"{fam} is outside the default families (port {port}): {r}")
        # The key, when a service sets it, replaces the default.
        r = lines(talk_tcp(PORT + 2))
        check(r.get("af_netlink") == "ok" and r.get("af_vsock") == "ok", f"restrict_address_families wins: {r}")
        check(r.get("kcmp") == "EPERM", f"the deny list is untouched by the families key: {r}")
        d.stop_clean()


def test_allow_lists_spawn_through_the_zygote():
    with Superd("allow", {
        "ss": svc(PORT + 10, "confine", extra='system_call_filter = ["@system-service"]'),
        "ssk": svc(PORT + 11, "id", extra='system_call_filter = ["@system-service"]\nsystem_call_error_number = "kill"'),
        "narrow": svc(PORT + 12, "narrow", extra=f"system_call_filter = {NARROW}"),
        # Killed at the first refused call: the zygote and the instance set-up must never make one.
        "narrowk": svc(PORT + 13, "id", extra=f'system_call_filter = {NARROW}\nsystem_call_error_number = "kill"'),
    }, (LO, HI)) as d:
        d.start()
        r = lines(talk_tcp(PORT + 10))
        check(r.get("mincore") == "EPERM", f"a call outside @system-service is refused: {r}")
        check(r.get("af_inet") == "ok", f"the service runs: {r}")
        # Base and gate, both inherited from the zygote; the instance loaded nothing itself.
        check(r.get("Seccomp_filters:", "").strip() == "2", f"filters under @system-service: {r}")
        for port in (PORT + 11, PORT + 13):
            out = talk_tcp(port).decode()
            check(re.match(r"uid=(\d+),", out) and LO <= int(re.match(r"uid=(\d+),", out).group(1)) <= HI,
                  f"an instance under a killing allow list runs (port {port}): {out!r}\n{d.log()[-2000:]}")
        r = lines(talk_tcp(PORT + 12))
        for call in ("setresuid", "prctl", "umask", "setpriority", "socket"):
            check(r.get(call) == "EPERM", f"{call}: the zygote's base let it through, the tail must refuse it: {r}")
        check(r.get("getpid") == "ok", f"{r}")
        check(r.get("Seccomp_filters:", "").strip() == "3", f"base + gate + the instance's tail: {r}")
        for name in ("ss", "ssk", "narrow", "narrowk"):
            d.wait_log(f"EXIT {name} serial=")
        check("signal=SIGSYS" not in d.log(), f"nothing was killed by the filter:\n{d.log()[-3000:]}")
        # From the outside: one zygote per CPU (at most 4) for each of the four services, each
        # root, each under the base and the gate.
        per = ZYGOTES_PER_SERVICE
        kids = d.zygotes()
        check(len(kids) == 4 * per, f"{4 * per} zygotes for four allow-list services, no live instance: {kids}")
        for k in kids:
            check(status_field(k, "Seccomp") == "2" and status_field(k, "Seccomp_filters") == "2",
                  f"zygote {k}: {status_field(k, 'Seccomp')} {status_field(k, 'Seccomp_filters')}")
            check(status_field(k, "Uid").split()[0] == "0", f"zygote {k} runs as root")
        d.stop_clean()


def test_abstract_sockets_stay_inside_each_instance():
    host_name = f"superd-h2-host-{os.getpid()}"
    pair_name = f"superd-h2-pair-{os.getpid()}"
    open_name = f"superd-h2-open-{os.getpid()}"
    host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host.bind("\0" + host_name)
    host.listen(8)
    with Superd("abstract", {
        "out": svc(PORT + 20, "abstract", host_name, "connect"),
        "outopen": svc(PORT + 21, "abstract", host_name, "connect", extra="restrict_abstract_sockets = false"),
        "pair": svc(PORT + 22, "abstract", pair_name),
        "pairopen": svc(PORT + 23, "abstract", open_name, extra="restrict_abstract_sockets = false"),
    }, (LO, HI)) as d, host:
        d.start()
        # (a) instance -> host: refused by the scope; without it, the instance gets through.
        check(talk_tcp(PORT + 20) == b"connect EPERM\n", "an instance must not reach root's abstract socket")
        check(talk_tcp(PORT + 21) == b"connect ok\n", "restrict_abstract_sockets = false turns the scope off")

        def pair(port, name):
            """Instance A listens on @name; instance B of the same service connects. Sequential
            requests go to the first zygote (fewest unanswered), so A and B share a zygote's
            domain: only a domain of each instance's own keeps them apart. Returns B's answer
            and whether the host (outside every domain) reached A."""
            a = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                a.sendall(b"listen\n")
                af = a.makefile("rb")
                check(af.readline() == b"listening\n", "instance A listens")
                b_out = talk_tcp(port, send=b"connect\n").decode()
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as h:
                    h.settimeout(5)
                    h.connect("\0" + name)
                a.sendall(b"done\n")
                rest = af.read().decode()
                return b_out, rest.count("accepted")
            finally:
                a.close()

        b_out, accepted = pair(PORT + 22, pair_name)
        check(b_out == "connect EPERM\n", f"instance B must not reach instance A's abstract socket: {b_out!r}")
        # What Landlock does not give: the host, outside every domain, reaches A's socket (only
        # private_network, another abstract namespace, hides it). Pinned here so the docs stay true.
        check(accepted == 1, f"the host's connection reached instance A: {accepted}")
        b_out, accepted = pair(PORT + 23, open_name)
        check(b_out == "connect ok\n", f"without the scope, instance B reaches A: {b_out!r}")
        d.stop_clean()


def test_signals_cannot_leave_an_instance():
    """Why the signal scope is defence in depth here: every instance is PID 1 of a PID namespace
    of its own, so kill() cannot name another process, and a pidfd that crosses in (SCM_RIGHTS)
    is refused by pidfd_send_signal (EINVAL: the target is not in the caller's namespace or
    below), with or without the scope, even for a static user's process of the very same UID.
    The scope itself (signal 0 to a process outside the domain: EPERM) is checked in
    tests/unit/test_landlock.cpp. This test pins the namespace barrier the docs rely on."""
    d = Superd("signal", {}, (LO, HI))
    sleeper = None
    srv = None
    stop = threading.Event()
    t = None
    try:
        sock_path = os.path.join(d.root, "pidfd.sock")
        user = f'dynamic_user = false\nuser = "{STATIC_UID}"\n'
        d.write_service("sig", svc(PORT + 30, "pidfd-kill", sock_path, extra=user + "restrict_signals = true"))
        d.write_service("sigopen", svc(PORT + 31, "pidfd-kill", sock_path, extra=user + "restrict_signals = false"))
        d.write_service("sigdyn", svc(PORT + 32, "pidfd-kill", sock_path, extra="restrict_signals = false"))
        sleeper = subprocess.Popen(["sleep", "60"], user=STATIC_UID, group=STATIC_UID, extra_groups=[])
        pidfd = os.pidfd_open(sleeper.pid)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(sock_path)
        os.chmod(sock_path, 0o777)
        srv.listen(8)
        srv.settimeout(0.2)

        def hand_out():
            for _ in range(300):  # at most ~60 s
                if stop.is_set():
                    return
                try:
                    c, _ = srv.accept()
                except (socket.timeout, OSError):
                    continue
                with c:
                    socket.send_fds(c, [b"p"], [pidfd])

        t = threading.Thread(target=hand_out, daemon=True)
        t.start()
        d.start()
        for port in (PORT + 30, PORT + 31, PORT + 32):
            out = talk_tcp(port)
            check(out == b"signal EINVAL\n", f"a pidfd from outside the PID namespace is refused (port {port}): {out!r}")
        check(sleeper.poll() is None, "the sleeper is untouched")
        stop.set()
        t.join(15)
        os.close(pidfd)
        d.stop_clean()
        left = [p for p in uids_of_processes(STATIC_UID, STATIC_UID) if p != sleeper.pid]
        check(not left, f"processes of uid {STATIC_UID} survive: {left}")
    finally:
        stop.set()
        if t:
            t.join(15)
        if srv:
            srv.close()
        if sleeper:
            sleeper.kill()
            sleeper.wait()
        d.close()


if __name__ == "__main__":
    tests = [test_default_deny_additions_and_address_families, test_allow_lists_spawn_through_the_zygote,
             test_signals_cannot_leave_an_instance]
    if landlock_abi() >= 6:
        tests.append(test_abstract_sockets_stay_inside_each_instance)
    else:
        # Not passed silently: named, with the reason (superd itself warns and runs without it).
        print(f"SKIP test_abstract_sockets_stay_inside_each_instance: Landlock ABI {landlock_abi()} < 6 has no scopes")
    main(tests)
