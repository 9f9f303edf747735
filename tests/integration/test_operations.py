"""Operations: one broken service file does not stop the others. serve and reload skip a service
whose own file fails validation (logged once with FILE:LINE:COL, shown as failed in status) and
serve the rest; problems that concern everything still refuse; strict = true restores
all-or-nothing; superd check still exits 2."""
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import subprocess
from harness import (SUPERD, Superd, check, skip, internal_service, listen_inode, main, poll_until, service, talk_tcp,
                     talk_udp, xinetd_stream)

LO, HI = 89800, 89899
PORT = 17300


def test_a_service_with_a_missing_exec_is_skipped_and_the_others_serve():
    with Superd("ops-skip", {"good": service(PORT, "id"),
                             "gone": service(PORT + 1, program="/nonexistent/removed-package/daemon")},
                (LO, HI)) as d:
        gone = os.path.join(d.root, "conf.d", "gone.toml")
        r = d.cli("check")
        check(r.returncode == 2 and f"{gone}:4:8: service.exec[0]" in r.stderr,
              f"check still fails, at the exec line: {r.returncode} {r.stderr!r}")
        d.start()
        check(b"uid=" in talk_tcp(PORT), "the good service serves")
        errors = [l for l in d.log().splitlines() if "gone" in l and "error" in l]
        check(len(errors) == 1 and f"{gone}:4:8: service.exec[0]" in errors[0] and "is not served" in errors[0],
              f"one error line with its position: {errors}")
        st = json.loads(d.cli("status", "--json").stdout)
        failed = {f["name"]: f["reason"] for f in st["failed"]}
        check("gone" in failed and "No such file" in failed["gone"], f"status shows it failed: {st['failed']}")
        check([s["name"] for s in st["services"]] == ["good"], f"only good is served: {st['services']}")
        check(re.search(r"service gone +failed +" + re.escape(gone), d.cli("status").stdout), "status text")
        # A reload with another broken file and a new good one: the good one comes, the rest stays.
        d.write_service("bad2", "[socket]\nlisten = [\"127.0.0.1:1\"]\nmax_conections = 3\n[service]\nexec = [\"@PROBE@\"]\n")
        d.write_service("new", service(PORT + 2, "id"))
        r = d.cli("reload")
        check(r.returncode == 0, f"reload with a broken file: {r.returncode} {r.stderr}")
        check(b"uid=" in talk_tcp(PORT + 2) and b"uid=" in talk_tcp(PORT), "the new and the old good service serve")
        d.wait_log("bad2.toml:3:1: socket.max_conections: unknown key")
        st = json.loads(d.cli("status", "--json").stdout)
        check(sorted(f["name"] for f in st["failed"]) == ["bad2", "gone"], f"both failed: {st['failed']}")
        # Fixed: served after the next reload.
        d.write_service("gone", service(PORT + 1, "id"))
        check(d.cli("reload").returncode == 0 and b"uid=" in talk_tcp(PORT + 1), "the fixed service serves")
        # Problems that concern everything still refuse a reload.
        d.write_service("clash", service(PORT, "id"))
        r = d.cli("reload")
        check(r.returncode != 0 and "overlaps" in r.stderr, f"an overlap still refuses: {r.returncode} {r.stderr}")
        check(b"uid=" in talk_tcp(PORT), "and the running configuration stays")
        d.stop_clean()


def test_strict_restores_all_or_nothing():
    with Superd("ops-strict", {"good": service(PORT + 10, "id"), "gone": service(PORT + 11, program="/nonexistent/x")},
                (LO, HI), global_extra="strict = true") as d:
        d.start(expect_ready=False)
        rc = d.wait_exit(timeout=20)
        check(rc == 2 and "service.exec[0]" in d.log(), f"strict: serve refuses: rc {rc} {d.log()[-500:]}")
        d.assert_clean()


def test_a_converted_xinetd_service_with_a_missing_server_is_named_at_its_server_line():
    xinetd = (xinetd_stream("gone", PORT + 20, "        server          = /nonexistent/in.gone\n") +
              xinetd_stream("fine", PORT + 21, "        server          = @PROBE@\n        server_args     = id\n"))
    with Superd("ops-xinetd", {}, (LO, HI), xinetd=xinetd) as d:
        lines = open(d.xinetd_path).read().splitlines()
        server_line = next(i + 1 for i, l in enumerate(lines) if "in.gone" in l)
        r = d.run_cli("check", "--xinetd", d.xinetd_path, "-c", d.config)
        check(r.returncode == 2 and re.search(rf"{re.escape(d.xinetd_path)}:{server_line}:\d+: service.exec\[0\]", r.stderr),
              f"the server line ({server_line}): {r.stderr!r}")
        d.start()
        check(b"uid=" in talk_tcp(PORT + 21), "the other converted service serves")
        d.stop_clean()


def test_sd_notify_ready_reloading_status_watchdog_stopping():
    with Superd("ops-notify", {"hold": service(PORT + 30, "sleep", "5")}, (LO, HI)) as d:
        path = os.path.join(d.root, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        got = []  # (time, message)
        done = threading.Event()

        def listen():
            while not done.is_set():
                try:
                    got.append((time.monotonic(), sock.recv(4096).decode()))
                except socket.timeout:
                    pass

        t = threading.Thread(target=listen)
        t.start()
        try:
            d.start(env=dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000"))
            conn = socket.create_connection(("127.0.0.1", PORT + 30))
            conn.recv(100)
            time.sleep(2.2)
            msgs = [m for _, m in got]
            check(msgs and msgs[0] == "READY=1", f"READY=1 first: {msgs[:3]}")
            status = [m for m in msgs if m.startswith("STATUS=")]
            check(status and re.fullmatch(r"STATUS=\d+ live instances; UIDs \d+ held, \d+ free of 100", status[0]),
                  f"STATUS= with instances and the pool: {status}")
            check(any(m.startswith("STATUS=1 live instances") for m in status), f"the live instance counted: {status}")
            stimes = [t0 for t0, m in got if m.startswith("STATUS=")]
            check(all(b - a >= 0.7 for a, b in zip(stimes, stimes[1:])), f"at most once a second (received times): {stimes}")
            dogs = [t0 for t0, m in got if m == "WATCHDOG=1"]
            # Every 200 ms (half of 400 ms): about 11 in 2.2 s (receive times bunch, counts do not).
            span = dogs[-1] - dogs[0] if dogs else 0
            check(8 <= len(dogs) <= 15 and 1.5 <= span, f"WATCHDOG=1 every 200 ms: {len(dogs)} over {span:.2f} s")
            n = len(got)
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log("reloaded: 1 services")
            time.sleep(0.3)
            after = [m for _, m in got[n:] if not m.startswith(("WATCHDOG", "STATUS"))]
            check(len(after) >= 2 and re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", after[0]) and after[1] == "READY=1",
                  f"RELOADING=1 with MONOTONIC_USEC, then READY=1: {after}")
            usec = int(after[0].split("=")[-1])
            check(abs(usec / 1e6 - time.monotonic()) < 5, f"MONOTONIC_USEC is CLOCK_MONOTONIC: {usec}")
            conn.close()
            n = len(got)
            check(d.stop() == 0, "stop")
            time.sleep(0.3)
            check("STOPPING=1" in [m for _, m in got[n:]], f"STOPPING=1: {[m for _, m in got[n:]]}")
        finally:
            done.set()
            t.join()
            sock.close()
        d.assert_clean()


def test_log_lines_carry_a_timestamp_or_journal_priorities():
    with Superd("ops-log", {"who": service(PORT + 40, "id")}, (LO, HI)) as d:
        d.start()
        talk_tcp(PORT + 40)
        d.wait_log("EXIT who ")
        d.stop_clean()
        lines = [l for l in d.log().splitlines() if l]
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error): "
        check(lines and all(re.match(stamp, l) for l in lines), f"every line stamped: {lines[:3]}")
        # stderr is the journal (JOURNAL_STREAM names its device and inode): <N> priorities.
        open(d.log_path, "w").close()
        st = os.stat(d.log_path)
        d.start(env=dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"))
        talk_tcp(PORT + 40)
        d.wait_log("EXIT who ")
        d.stop_clean()
        lines = [l for l in d.log().splitlines() if l]
        check(lines and all(re.match(r"<[3467]>(debug|info|warning|error): ", l) for l in lines), f"journal: {lines[:3]}")
        check(any(l.startswith("<6>info: START who ") for l in lines), "START at priority 6 (info)")
        # Another stream's JOURNAL_STREAM (not this stderr): stamped, as systemd advises.
        open(d.log_path, "w").close()
        d.start(env=dict(os.environ, JOURNAL_STREAM="1:2"))
        d.stop_clean()
        check(re.match(stamp, d.log()), f"a JOURNAL_STREAM of another file is not the journal: {d.log()[:100]!r}")


def test_superds_own_log_target():
    with Superd("ops-ownlog", {"who": service(PORT + 45, "id")}, (LO, HI),
                global_extra='log_target = "file:@LOG@/superd.log"'.replace("@LOG@", "/nonexistent-dir")) as d:
        d.start(expect_ready=False)
        rc = d.wait_exit(timeout=20)
        check(rc == 1 and 'log_target "file:/nonexistent-dir/superd.log"' in d.log(), f"a bad target: {rc} {d.log()}")
    with Superd("ops-ownlog2", {"who": service(PORT + 45, "id")}, (LO, HI)) as d:
        path = os.path.join(d.root, "superd-own.log")
        with open(d.config, "a") as f:
            f.write(f'log_target = "file:{path}"\n')
        d.start()
        talk_tcp(PORT + 45)
        wait = lambda: os.path.exists(path) and "EXIT who " in open(path).read()
        check(poll_until(wait, 10), "superd's lines go to the file")
        text = open(path).read()
        check(re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} superd\[\d+\]: info: ready: 1 services", text, re.M),
              f"stamped, with its level: {text[:500]!r}")
        check("ready:" not in d.log(), f"and not to stderr: {d.log()[-500:]!r}")
        d.stop_clean()
        check("stopped: every instance ended" in open(path).read(), "to the end")


JOURNALD = "/lib/systemd/systemd-journald"


def test_log_target_journal_through_a_real_journald():
    """The native journal protocol, read back by journalctl from a real systemd-journald that the
    test runs in a private mount namespace (its own /run/systemd/journal and /run/log), with
    superd in the same namespace."""
    if not os.access(JOURNALD, os.X_OK):
        skip(f"no {JOURNALD}")
    port = PORT + 46
    with Superd("ops-journal", {"web": service(port, "id", extra='log_target = "journal"')}, (LO, HI),
                global_extra='log_target = "journal"') as d:
        pidfile = os.path.join(d.root, "journald.pid")
        script = f"""set -e
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/systemd/journal
mount -t tmpfs tmpfs /run/log
mkdir -p /run/log/journal
{JOURNALD} & echo $! > {pidfile}
for i in $(seq 200); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
exec {SUPERD} serve -c {d.config}
"""
        d.logf = open(d.log_path, "ab")
        d.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                  stdin=subprocess.DEVNULL, stdout=d.logf, stderr=d.logf)
        try:
            check(poll_until(lambda: talk_ok(port), 15), f"superd serves: {d.log()[-800:]}")
            entries = []

            def read():
                r = subprocess.run(["nsenter", "-t", str(d.proc.pid), "-m", "journalctl", "-D", "/run/log/journal",
                                    "-o", "json", "--no-pager"], capture_output=True, text=True, timeout=30)
                entries[:] = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
                return any("EXIT web" in e.get("MESSAGE", "") for e in entries)

            check(poll_until(read, 10), f"the EXIT line reaches the journal: {[e.get('MESSAGE') for e in entries][-5:]}")
            start = [e for e in entries if e.get("MESSAGE", "").startswith("START web ")]
            check(start and start[0].get("SUPERD_SERVICE") == "web" and start[0].get("PRIORITY") == "6" and
                  start[0].get("SYSLOG_IDENTIFIER") == "superd" and LO <= int(start[0].get("SUPERD_UID", 0)) <= HI and
                  start[0].get("SUPERD_PEER", "").startswith("127.0.0.1:"), f"structured fields: {start}")
            ready = [e for e in entries if e.get("MESSAGE", "").startswith("ready: 1 services")]
            check(ready and ready[0].get("PRIORITY") == "6" and "SUPERD_SERVICE" not in ready[0],
                  f"superd's own line, at its level: {ready}")
            check("ready:" not in d.log(), "not on stderr")
            check(d.stop() == 0, "stop")
        finally:
            if os.path.exists(pidfile):
                try:
                    os.kill(int(open(pidfile).read()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        d.assert_clean()


def talk_ok(port):
    try:
        return b"uid=" in talk_tcp(port, timeout=2)
    except OSError:
        return False


def test_the_command_line_version_usage_errors_root_and_status_counters():
    r = subprocess.run([SUPERD, "--version"], capture_output=True, text=True)
    check(r.returncode == 0 and re.fullmatch(r"superd \d+\.\d+\.\d+\n", r.stdout), f"--version: {r.stdout!r}")
    for args in (["bogus"], ["status", "--nope"], []):
        r = subprocess.run([SUPERD, *args], capture_output=True, text=True)
        check(r.returncode == 2 and "Run with --help" in r.stderr, f"usage error {args}: {r.returncode} {r.stderr!r}")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SUPERD]
    for args, code in ((["status"], 1), (["reload"], 1), (["run", "--", "/bin/true"], 125)):
        r = subprocess.run(nobody + args, capture_output=True, text=True)
        check(r.returncode == code and "needs root" in r.stderr and "reach" not in r.stderr,
              f"non-root {args}: {r.returncode} {r.stderr!r}")
    with Superd("ops-cli", {"who": service(PORT + 50, "id", socket_extra="allow = [\"10.9.9.9\"]"),
                            "ok": service(PORT + 51, "id"),
                            "day": internal_service("daytime", datagram=[f"127.0.0.1:{PORT + 52}"])}, (LO, HI)) as d:
        d.start()
        for _ in range(3):
            talk_tcp(PORT + 51)
        talk_tcp(PORT + 50)  # refused: not allowed
        talk_udp(PORT + 52, b"x")
        d.wait_log("EXIT ok ", 3)
        text = d.cli("status").stdout
        check(re.search(r"service ok .* accepted 3 refused 0 failed 0  up \d+s", text), f"counters and uptime: {text}")
        check(re.search(r"service who .* accepted 0 refused 1 failed 0", text), f"a refusal counted: {text}")
        check(re.search(rf"service day .*udp 127\.0\.0\.1:{PORT + 52}", text), f"UDP listeners marked: {text}")
        st = {s["name"]: s for s in json.loads(d.cli("status", "--json").stdout)["services"]}
        check(st["ok"]["accepted"] == 3 and st["ok"]["uptime_s"] > 0, f"status --json: {st['ok']}")
        check(d.cli("reload").returncode == 0, "reload")
        st = {s["name"]: s for s in json.loads(d.cli("status", "--json").stdout)["services"]}
        check(st["ok"]["accepted"] == 3, f"a reload keeps the counters: {st['ok']}")
        d.stop_clean()


def activate(d, args):
    """superd serve under the real systemd-socket-activate with `args` (its -l, -d, --fdname):
    it holds the sockets and execs superd, in the same PID, at the first connection."""
    d.logf = open(d.log_path, "ab")
    d.proc = subprocess.Popen(["systemd-socket-activate", *args, SUPERD, "serve", "-c", d.config],
                              stdin=subprocess.DEVNULL, stdout=d.logf, stderr=d.logf)
    check(poll_until(lambda: "Listening on" in d.log(), 10), f"systemd-socket-activate listens: {d.log()}")


def socket_inode_of(pid, fd):
    return os.readlink(f"/proc/{pid}/fd/{fd}").strip("socket:[]")


def test_sockets_from_systemd_socket_activate_are_adopted_and_kept_over_reloads():
    p1, p2, p3 = PORT + 60, PORT + 61, PORT + 62
    with Superd("ops-sd", {"web": service(p1, "id"), "other": service(p3, "id")}, (LO, HI)) as d:
        activate(d, ["-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}", "--fdname=web:spare"])
        inode = listen_inode(p1)
        check(b"uid=" in talk_tcp(p1), "the connection that made systemd start superd is served")
        d.wait_log("ready: 2 services")
        log = d.log()
        check(re.search(rf"service web: listening on 127\.0\.0\.1:{p1} \(passed fd 3 \(web, 127\.0\.0\.1:{p1}\)\)", log),
              f"adopted: {log[-1500:]}")
        check(socket_inode_of(d.proc.pid, 3) == inode or listen_inode(p1) == inode, "the very socket systemd made")
        check(log.count("matches no listener") == 1, f"one warning per unmatched socket: {log[-1500:]}")
        check(f"passed fd 4 (spare, 127.0.0.1:{p2}) matches no listener" in log, "the spare one named")
        check(b"uid=" in talk_tcp(p3), "a listener systemd did not pass is bound by superd")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: 2 services")
        check(listen_inode(p1) == inode and b"uid=" in talk_tcp(p1), "a reload keeps the adopted socket")
        check(d.stop() == 0, "stop")
        d.assert_clean()


def test_a_passed_socket_of_the_wrong_type_is_not_adopted():
    port = PORT + 64
    with Superd("ops-sdtype", {"web": service(port, "id")}, (LO, HI)) as d:
        activate(d, ["-d", "-l", f"127.0.0.1:{port}", "--fdname=wrongtype"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"x", ("127.0.0.1", port))  # what makes systemd-socket-activate start superd
        d.wait_log("ready: 1 services")
        check(f"passed fd 3 (wrongtype, udp 127.0.0.1:{port}) matches no listener" in d.log(),
              f"a datagram socket where a stream listener is configured: {d.log()[-1000:]}")
        check(b"uid=" in talk_tcp(port), "superd binds its own stream socket")
        check(d.stop() == 0, "stop")
        d.assert_clean()


def test_listen_fds_for_another_pid_are_ignored():
    with Superd("ops-sdpid", {"web": service(PORT + 63, "id")}, (LO, HI)) as d:
        d.start(env=dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1", LISTEN_FDNAMES="x"))
        check("LISTEN_FDS=1 is for LISTEN_PID=1, not superd" in d.log(), f"a warning: {d.log()[-800:]}")
        check(b"uid=" in talk_tcp(PORT + 63), "it binds and serves as usual")
        d.stop_clean()


PARSE = """
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value, fam.type])
print(json.dumps(out))
"""


def scrape(port, request=b"GET /metrics HTTP/1.0\r\n\r\n"):
    """The whole answer; what came before the server closed (or reset) the connection."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        try:
            c.sendall(request)
            while chunk := c.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def parse(text):
    """The Prometheus project's own parser (Debian's python3-prometheus-client)."""
    r = subprocess.run(["/usr/bin/python3", "-c", PARSE], input=text, capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"prometheus_client could not parse the scrape: {r.stderr}\n{text[:2000]}")
    return json.loads(r.stdout)


def value(samples, name, **labels):
    found = [v for n, l, v, _ in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    check(len(found) == 1, f"one {name}{labels}: {found}")
    return found[0]


def test_metrics_parse_with_prometheus_client_and_count_connections():
    mport = PORT + 70
    with Superd("ops-metrics", {"ok": service(PORT + 71, "id"), "bad": service(PORT + 72, "exit", "3"),
                                "shut": service(PORT + 73, "id", socket_extra='deny = ["127.0.0.0/8"]')},
                (LO, HI), global_extra=f'metrics_listen = "127.0.0.1:{mport}"') as d:
        d.start()
        for _ in range(7):
            talk_tcp(PORT + 71)
        for _ in range(2):
            talk_tcp(PORT + 72)
        for _ in range(3):
            try:
                talk_tcp(PORT + 73)
            except ConnectionResetError:
                pass  # refused: closed at once
        d.wait_log("EXIT ok ", 7)
        d.wait_log("EXIT bad ", 2)
        raw = scrape(mport)
        head, _, body = raw.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.0 200 OK") and b"text/plain; version=0.0.4" in head, f"answer: {head!r}")
        samples = parse(body.decode())
        check(value(samples, "superd_connections_accepted_total", service="ok") == 7, "7 accepted")
        check(value(samples, "superd_connections_ended_total", service="ok", status="ok") == 7, "7 ended ok")
        check(value(samples, "superd_connections_ended_total", service="bad", status="error") == 2, "2 ended in error")
        check(value(samples, "superd_connections_refused_total", service="shut", reason="address") == 3, "3 refused")
        check(value(samples, "superd_spawn_latency_seconds_count", service="ok") == 7, "7 spawn latencies")
        check(value(samples, "superd_spawn_latency_seconds_bucket", service="ok", le="+Inf") == 7, "the +Inf bucket")
        check(value(samples, "superd_instances_live", service="ok") == 0, "none live")
        check(value(samples, "superd_uid_pool_size") == HI - LO + 1, "the pool's size")
        check(value(samples, "superd_uid_pool_leased") + value(samples, "superd_uid_pool_free") == HI - LO + 1,
              "leased + free = size (none quarantined or blocked)")
        check(value(samples, "superd_cleanup_batches_total") >= 1, "cleanup batches counted")
        check(value(samples, "superd_open_fds") > 3 and value(samples, "superd_resident_memory_bytes") > 1e6, "fds, RSS")
        types = {n: t for n, _, _, t in samples}
        check(types.get("superd_spawn_latency_seconds_bucket") == "histogram", f"a histogram: {types}")
        # Bad requests: not GET, another path, oversized, too slow; none stops the next scrape.
        check(scrape(mport, b"POST /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 405"), "POST: 405")
        check(scrape(mport, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 404"), "another path: 404")
        check(scrape(mport, b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 9000).startswith(b"HTTP/1.0 431"), "oversized: 431")
        slow = socket.create_connection(("127.0.0.1", mport))
        slow.sendall(b"GET /metr")
        t0 = time.time()
        slow.settimeout(10)
        check(slow.recv(100) == b"" and 4 <= time.time() - t0 <= 8, "a slow request is closed after 5 s")
        slow.close()
        check(scrape(mport).startswith(b"HTTP/1.0 200"), "and the endpoint still answers")
        d.stop_clean()


def test_the_real_prometheus_server_scrapes_superd():
    prom = shutil.which("prometheus")
    if not prom:
        skip("no prometheus server (Debian's prometheus package)")
    mport, pport = PORT + 76, PORT + 77
    with Superd("ops-prom", {"ok": service(PORT + 78, "id")}, (LO, HI),
                global_extra=f'metrics_listen = "127.0.0.1:{mport}"') as d:
        d.start()
        for _ in range(5):
            talk_tcp(PORT + 78)
        d.wait_log("EXIT ok ", 5)
        conf = os.path.join(d.root, "prometheus.yml")
        with open(conf, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: superd\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n")
        p = subprocess.Popen([prom, f"--config.file={conf}", f"--storage.tsdb.path={d.root}/tsdb",
                              f"--web.listen-address=127.0.0.1:{pport}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            got = {}

            def query():
                try:
                    raw = scrape(pport, b"GET /api/v1/query?query=superd_connections_accepted_total HTTP/1.0\r\n\r\n")
                    body = json.loads(raw.partition(b"\r\n\r\n")[2] or b"{}")
                except (OSError, ValueError):
                    return False
                got.update(body)
                return bool(body.get("data", {}).get("result"))

            check(poll_until(query, 30), f"prometheus scraped superd: {got}")
            res = {r["metric"].get("service"): r["value"][1] for r in got["data"]["result"]}
            check(res.get("ok") == "5", f"the real server reads 5 accepted connections of ok: {res}")
            raw = scrape(pport, b"GET /api/v1/query?query=up HTTP/1.0\r\n\r\n")
            up = json.loads(raw.partition(b"\r\n\r\n")[2])["data"]["result"]
            check(up and up[0]["value"][1] == "1", f"the target is up: {up}")
        finally:
            p.terminate()
            p.wait(timeout=30)
        d.stop_clean()


def test_metrics_refuse_peers_outside_metrics_allow():
    mport = PORT + 75
    with Superd("ops-metrics-allow", {}, (LO, HI),
                global_extra=f'metrics_listen = "127.0.0.1:{mport}"\nmetrics_allow = ["10.0.0.0/8"]') as d:
        d.start()
        check(scrape(mport) == b"", "a loopback peer outside metrics_allow gets no answer")
        d.stop_clean()


if __name__ == "__main__":
    main([test_a_service_with_a_missing_exec_is_skipped_and_the_others_serve, test_strict_restores_all_or_nothing,
          test_a_converted_xinetd_service_with_a_missing_server_is_named_at_its_server_line,
          test_sd_notify_ready_reloading_status_watchdog_stopping,
          test_log_lines_carry_a_timestamp_or_journal_priorities, test_superds_own_log_target,
          test_log_target_journal_through_a_real_journald,
          test_the_command_line_version_usage_errors_root_and_status_counters,
          test_sockets_from_systemd_socket_activate_are_adopted_and_kept_over_reloads,
          test_a_passed_socket_of_the_wrong_type_is_not_adopted, test_listen_fds_for_another_pid_are_ignored,
          test_metrics_parse_with_prometheus_client_and_count_connections,
          test_the_real_prometheus_server_scrapes_superd, test_metrics_refuse_peers_outside_metrics_allow])
