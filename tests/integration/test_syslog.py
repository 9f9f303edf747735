"""A service's syslog messages are not lost (issue 12, item 9): inside the sandbox /dev/log is a
datagram socket superd reads, and each message the probe sends through glibc's syslog(3) shows
in superd's log as "svc[serial] uid=U syslog.auth.err: probe[1]: ...", with the serial and UID
of the instance that sent it. Bounded: a message over 2 KiB is cut, at most 50 a second are
logged and the rest counted in one line. log_syslog = false leaves /dev/log alone. With
private_devices = false the socket is bound over the host's /dev/log (in the service's namespace
only); since the test must not touch the real host's /dev, that case runs superd in a private
mount namespace whose /dev is a small tmpfs the test builds, with /dev/log a symlink to a socket
the test itself reads (as systemd's /dev/log is one to journald's dev-log)."""
import os
import re
import socket
import subprocess
import time
from harness import (SUPERD, Superd, check, fields, main, poll_until, service, skip, talk_tcp)

LO, HI = 89900, 89999
PORT = 17400

PRIVATE_DEV = "private_devices = true"


def start_line(d, name, uid):
    """The serial of the START line of service `name` for the instance with `uid`. The instance's
    first syslog line can come before it: the daemon logs START when the zygote's answer arrives, and
    under a sanitizer that answer can lose the race with the instance's first datagram."""
    pattern = re.compile(rf"START {name} serial=(\d+) .*uid={uid}\b")
    poll_until(lambda: pattern.search(d.log()), 10, interval=0.02)
    m = pattern.search(d.log())
    check(m, f"a START line for {name} uid={uid}: {d.log()[-2000:]}")
    return int(m.group(1))


def syslog_files(d):
    path = os.path.join(d.root, "run", "superd", "syslog")
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


def test_a_message_is_logged_with_its_service_serial_uid_and_priority():
    with Superd("syslog-basic", {"who": service(PORT, "syslog", "refused: bad password", extra=PRIVATE_DEV),
                                 "big": service(PORT + 1, "syslog-big", "5000", extra=PRIVATE_DEV)}, (LO, HI)) as d:
        d.start()
        for attempt in range(2):
            out = fields(talk_tcp(PORT).decode())
            check(out.get("devlog") == "socket" and out.get("sent") == "1", f"/dev/log is a socket inside: {out}")
            uid = int(out["uid"].split(",")[0])
            check(LO <= uid <= HI, f"a dynamic UID: {out}")
            d.wait_log(f"uid={uid} syslog.auth.err: probe[1]: refused: bad password")
            serial = start_line(d, "who", uid)
            check(re.search(rf"error: who\[{serial}\] uid={uid} syslog\.auth\.err: probe\[1\]: refused: bad password$",
                            d.log(), re.M),
                  f"service, serial {serial}, uid, priority, the tag kept and the timestamp gone, at level error: "
                  f"{[l for l in d.log().splitlines() if 'syslog' in l]}")
        # Oversized: cut at 2 KiB, its full size said.
        out = fields(talk_tcp(PORT + 1).decode())
        d.wait_log("[cut: ")
        line = next(l for l in d.log().splitlines() if "big[" in l and "syslog.auth.err" in l)
        text = line.split("syslog.auth.err: ", 1)[1]
        check(text.startswith("probe[1]: big:xxx") and ":end" not in text and
              text.endswith(f" [cut: {len('probe[1]: big:') + 5000 + len(':end')} bytes]"), f"cut: {line[:120]}...{line[-60:]}")
        check(len(text) <= 2048 + len(" [cut: 5018 bytes]"), f"at most 2 KiB of it: {len(text)}")
        # One socket per service in superd's runtime area; a reload replaces them, old ones go.
        check(len(syslog_files(d)) == 2, f"one socket per service: {syslog_files(d)}")
        before = syslog_files(d)
        check(d.cli("reload").returncode == 0, "reload")
        d.wait_log("reloaded: 2 services")
        after = syslog_files(d)
        check(len(after) == 2 and not set(after) & set(before), f"the reloaded services' own sockets: {before} -> {after}")
        out = fields(talk_tcp(PORT).decode())
        uid = int(out["uid"].split(",")[0])
        d.wait_log(f"uid={uid} syslog.auth.err: probe[1]: refused: bad password")
        d.stop_clean()
        check(syslog_files(d) == [], f"the sockets go with superd: {syslog_files(d)}")


def test_log_syslog_false_leaves_dev_log_alone():
    with Superd("syslog-off", {"quiet": service(PORT + 10, "syslog", "not for superd",
                                                extra=PRIVATE_DEV + "\nlog_syslog = false")}, (LO, HI)) as d:
        d.start()
        out = fields(talk_tcp(PORT + 10).decode())
        check(out.get("devlog") == "none" and out.get("sent") == "1", f"no /dev/log in the private /dev: {out}")
        d.wait_log("EXIT quiet ")
        time.sleep(0.3)
        check("syslog." not in d.log() and "not for superd" not in d.log(), f"nothing logged: {d.log()[-1500:]}")
        check(syslog_files(d) == [], f"no socket: {syslog_files(d)}")
        d.stop_clean()


def test_a_static_user_is_named_by_its_main_process():
    with Superd("syslog-static", {"nob": service(PORT + 15, "syslog", "static says hi",
                                                 extra='dynamic_user = false\nuser = "nobody"\n' + PRIVATE_DEV)},
                (LO, HI)) as d:
        d.start()
        out = fields(talk_tcp(PORT + 15).decode())
        check(out.get("devlog") == "socket" and out["uid"].startswith("65534,"), f"nobody, with /dev/log: {out}")
        d.wait_log("syslog.auth.err: probe[1]: static says hi")
        serial = start_line(d, "nob", 65534)
        check(f"nob[{serial}] uid=65534 syslog.auth.err: probe[1]: static says hi" in d.log(),
              f"its serial, by PID: {[l for l in d.log().splitlines() if 'syslog' in l]}")
        d.stop_clean()


def test_a_flood_is_bounded_and_counted_and_superd_keeps_serving():
    n = 600
    with Superd("syslog-flood", {"loud": service(PORT + 20, "syslog", "flood", str(n), extra=PRIVATE_DEV),
                                 "calm": service(PORT + 21, "id")}, (LO, HI)) as d:
        d.start()
        t0 = time.time()
        out = fields(talk_tcp(PORT + 20, timeout=60).decode())
        took = time.time() - t0
        check(out.get("sent") == str(n), f"the flood was sent: {out}")
        check(b"uid=" in talk_tcp(PORT + 21), "superd serves another service meanwhile")
        d.wait_log("loud syslog: ")
        logged = lambda: len(re.findall(r"syslog\.auth\.err: probe\[1\]: flood #\d+$", d.log(), re.M))
        dropped = lambda: sum(int(x) for x in re.findall(r"loud syslog: (\d+) messages dropped \(at most 50 a second "
                                                         r"are logged\)", d.log()))
        # Every message is either logged or counted (the last window's count comes at its end).
        check(poll_until(lambda: logged() + dropped() == n, 5),
              f"logged {logged()} + dropped {dropped()} == {n}: {d.log()[-1500:]}")
        check(50 <= logged() <= 50 * (int(took) + 2), f"at most 50 a second logged: {logged()} in {took:.1f}s")
        check(b"uid=" in talk_tcp(PORT + 21), "and after it")
        d.stop_clean()


# --- private_devices = false: the host's /dev/log, in a private mount namespace ---------------

NODES = ["null", "zero", "full", "random", "urandom", "tty"]


def start_in_namespace(d, dev_log):
    """superd in a private mount namespace whose /dev is a tmpfs with the usual nodes (bound from
    the real /dev) and, with `dev_log`, /dev/log -> that path. Returns once superd is ready."""
    hostdev = os.path.join(d.root, "hostdev")
    os.makedirs(hostdev)
    binds = "".join(f"touch /dev/{n}; mount --bind {hostdev}/{n} /dev/{n}\n" for n in NODES)
    link = f"ln -s {dev_log} /dev/log\n" if dev_log else ""
    r, w = os.pipe()
    script = f"""set -e
mount --rbind /dev {hostdev}
mount -t tmpfs -o mode=0755 tmpfs /dev
{binds}mkdir /dev/shm /dev/mqueue
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
{link}exec {SUPERD} serve -c {d.config} --ready-fd {w}
"""
    d.logf = open(d.log_path, "ab")
    d.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script], pass_fds=[w],
                              stdin=subprocess.DEVNULL, stdout=d.logf, stderr=d.logf)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        ready = f.read(6)
    if ready != b"READY\n" and "unshare" in d.log() and "superd" not in d.log():
        skip(f"cannot build a private mount namespace here: {d.log()[-500:]}")
    check(ready == b"READY\n", f"superd in its namespace is ready: {ready!r} {d.log()[-2000:]}")


def test_private_devices_false_binds_over_the_hosts_dev_log():
    services = {"on": service(PORT + 30, "syslog", "to superd"),
                "off": service(PORT + 31, "syslog", "to the host", extra="log_syslog = false")}
    with Superd("syslog-host", services, (LO, HI)) as d, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as host:
        host_path = os.path.join(d.root, "host-dev-log.sock")
        host.bind(host_path)
        os.chmod(host_path, 0o666)
        host.settimeout(5)
        start_in_namespace(d, host_path)
        out = fields(talk_tcp(PORT + 30).decode())
        check(out.get("devlog") == "socket", f"/dev/log inside: {out}")
        uid = int(out["uid"].split(",")[0])
        d.wait_log(f"uid={uid} syslog.auth.err: probe[1]: to superd")
        serial = start_line(d, "on", uid)
        check(f"on[{serial}] uid={uid} syslog.auth.err: probe[1]: to superd" in d.log(), "its serial")
        # log_syslog = false: the instance's syslog reaches the host's /dev/log, as before.
        out = fields(talk_tcp(PORT + 31).decode())
        check(out.get("devlog") == "socket", f"the host's /dev/log: {out}")
        got = host.recv(4096)
        check(b"probe[1]: to the host" in got and got.startswith(b"<35>"), f"the host's syslog got it: {got!r}")
        check("to the host" not in d.log(), "and superd did not")
        check(b"uid=" in talk_tcp(PORT + 30), "still serving")
        host.setblocking(False)
        try:
            stray = host.recv(4096)
        except BlockingIOError:
            stray = b""
        check(stray == b"", f"the bind stays in the service's namespace: the host got {stray!r}")
        check(d.stop() == 0, "stop")
        d.assert_clean()


def test_private_devices_false_without_a_host_dev_log_warns_once():
    with Superd("syslog-nohost", {"lone": service(PORT + 40, "syslog", "nowhere")}, (LO, HI)) as d:
        start_in_namespace(d, None)
        warning = "service lone: log_syslog needs private_devices = true or a /dev/log on the host"
        check(d.log().count(warning) == 1, f"one warning at start: {d.log()[-1500:]}")
        out = fields(talk_tcp(PORT + 40).decode())
        check(out.get("devlog") == "none" and out.get("sent") == "1", f"no /dev/log made in the host's /dev: {out}")
        d.wait_log("EXIT lone ")
        check("syslog.auth" not in d.log() and syslog_files(d) == [], "nothing read, no socket")
        check(d.stop() == 0, "stop")
        d.assert_clean()


if __name__ == "__main__":
    main([test_a_message_is_logged_with_its_service_serial_uid_and_priority,
          test_log_syslog_false_leaves_dev_log_alone,
          test_a_static_user_is_named_by_its_main_process,
          test_a_flood_is_bounded_and_counted_and_superd_keeps_serving,
          test_private_devices_false_binds_over_the_hosts_dev_log,
          test_private_devices_false_without_a_host_dev_log_warns_once])
