"""Zero-downtime upgrade (issue 12, item 6): `superd upgrade` and SIGUSR2 re-execute the binary
in the same PID, handing over the listening sockets, the lease table, the live instances (pidfds
and stderr pipes) and the capsules; the new image reaps and cleans what the old one started. A
binary that is missing, not executable or refuses the hand-over, and a new image that cannot
start, leave the old image serving; kill -9 in the middle recovers as any crash does."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from harness import (SUPERD, Superd, check, internal_service, listen_inode, main, poll_until, service, talk_tcp,
                     uids_of_processes, wait_until)

LO, HI = 100000, 100599
PORT = 17500


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def echo_once(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def upgraded(d, *args):
    r = d.cli("upgrade", *args)
    check(r.returncode == 0 and r.stdout.startswith("upgraded: "), f"upgrade: {r.returncode} {r.stdout!r} {r.stderr!r}")
    return r.stdout


def test_upgrade_keeps_sockets_instances_and_their_stderr():
    shell = service(PORT + 1, "-c", "read x; echo late-$x >&2; echo done", program="/bin/sh")
    with Superd("upg-keep", {"echo": service(PORT, "echo"), "late": shell}, (LO, LO + 49)) as d:
        d.start()
        pid = d.proc.pid
        inode = listen_inode(PORT)
        long_lived = connect(PORT)
        check(echo_once(long_lived, b"before\n") == b"before\n", "the instance echoes")
        writer = connect(PORT + 1)
        d.wait_log("START late")
        out = upgraded(d)
        check(f"pid {pid}" in out and "2 live instances kept" in out, f"same PID, both instances kept: {out!r}")
        check(d.proc.poll() is None and listen_inode(PORT) == inode, "same process, same listening socket")
        check(echo_once(long_lived, b"after\n") == b"after\n", "the instance from before still echoes")
        writer.sendall(b"x\n")
        writer.shutdown(socket.SHUT_WR)
        check(writer.recv(100).startswith(b"done"), "the other instance ran to its end")
        writer.close()
        d.wait_log("late-x")  # its stderr pipe crossed the exec
        d.wait_log("EXIT late")
        check(talk_tcp(PORT, b"new\n") == b"new\n", "a new connection is served by the new image")
        long_lived.close()
        d.wait_log("EXIT echo serial=1 ")
        log = d.log()
        check("upgraded from superd" in log and "2 instances" in log, f"the new image says what it took:\n{log[-2000:]}")
        check("status=0" in [l for l in log.splitlines() if "EXIT echo serial=1 " in l][0], "reaped with its status")
        wait_until(lambda: len(d.lease_records()) == 0, 10, "every lease returned after the instances end")
        st = json.loads(d.cli("status", "--json").stdout)
        echo = [s for s in st["services"] if s["name"] == "echo"][0]
        check(echo["accepted"] == 2, f"counters carried over the upgrade: {echo}")
        d.stop_clean()


def test_sigusr2_upgrades_and_runtime_max_keeps_its_deadline():
    svc = service(PORT + 2, "sleep", "60", extra='runtime_max = "3s"\ntimeout_stop = "1s"')
    with Superd("upg-usr2", {"slow": svc}, (LO + 50, LO + 99)) as d:
        d.start()
        c = connect(PORT + 2)
        d.wait_log("START slow")
        t0 = time.time()
        time.sleep(1)
        d.proc.send_signal(signal.SIGUSR2)
        d.wait_log("upgraded from superd")
        d.wait_log("TIMEOUT slow", timeout=10)
        took = time.time() - t0
        check(took < 3.0 + 1.0, f"runtime_max counted from the start, not from the upgrade: {took:.1f}s")
        d.wait_log("EXIT slow")
        c.close()
        d.stop_clean()


def test_a_missing_or_not_executable_binary_is_refused_and_serving_goes_on():
    with Superd("upg-bad-bin", {"echo": service(PORT + 3, "echo")}, (LO + 100, LO + 149)) as d:
        d.start()
        r = d.cli("upgrade", "--binary", os.path.join(d.root, "bin", "gone"))
        check(r.returncode == 1 and "No such file" in r.stderr, f"missing: {r.returncode} {r.stderr!r}")
        plain = os.path.join(d.root, "bin", "superd-noexec")
        shutil.copy(SUPERD, plain)
        os.chmod(plain, 0o644)
        r = d.cli("upgrade", "--binary", plain)
        check(r.returncode == 1 and "not an executable" in r.stderr, f"not executable: {r.returncode} {r.stderr!r}")
        check(talk_tcp(PORT + 3, b"still\n") == b"still\n", "still serving")
        check(d.log().count("upgrade refused") == 2, "both logged")
        d.stop_clean()


def test_a_binary_that_refuses_the_handover_leaves_the_old_image_serving():
    with Superd("upg-other", {"echo": service(PORT + 4, "echo")}, (LO + 150, LO + 199)) as d:
        old = os.path.join(d.root, "bin", "superd-old")
        with open(old, "w") as f:  # an older superd: it knows no handover-check
            f.write("#!/bin/sh\necho \"The following argument was not expected: $1\" >&2\nexit 109\n")
        os.chmod(old, 0o755)
        d.start()
        c = connect(PORT + 4)
        r = d.cli("upgrade", "--binary", old)
        check(r.returncode == 1 and "refuses the hand-over" in r.stderr and "not expected" in r.stderr,
              f"refused with the binary's own words: {r.stderr!r}")
        # A configuration the new binary cannot load: refused the same way, before anything changed.
        d.write_service("broken", "[socket]\nlisten = [\"127.0.0.1:1\"]\nnot_a_key = 1\n")
        with open(d.config, "a") as f:
            f.write("strict = true\n")
        r = d.cli("upgrade")
        check(r.returncode == 1 and "not_a_key" in r.stderr, f"a bad configuration is refused: {r.stderr!r}")
        check(echo_once(c, b"x\n") == b"x\n" and talk_tcp(PORT + 4, b"y\n") == b"y\n", "still serving")
        c.close()
        os.unlink(os.path.join(d.root, "conf.d", "broken.toml"))
        d.stop_clean()


def test_a_new_image_that_cannot_start_goes_back_to_the_old_one():
    with Superd("upg-back", {"echo": service(PORT + 5, "echo")}, (LO + 200, LO + 249)) as d:
        wrapper = os.path.join(d.root, "bin", "superd-fails")
        with open(wrapper, "w") as f:  # passes the check, then cannot load its configuration
            f.write(f"#!/bin/sh\ncase \"$1\" in handover-check) exec {SUPERD} \"$@\";; esac\n"
                    f"exec {SUPERD} serve -c {d.root}/no-such.toml\n")
        os.chmod(wrapper, 0o755)
        d.start()
        pid = d.proc.pid
        c = connect(PORT + 5)
        r = d.cli("upgrade", "--binary", wrapper)
        check(r.returncode == 1 and "configuration does not load" in r.stderr, f"the answer says why: {r.stderr!r}")
        check(d.proc.poll() is None and d.proc.pid == pid, "the same process serves on")
        check("upgrade failed: the new image gave up" in d.log(), "the old image says so")
        check(echo_once(c, b"x\n") == b"x\n", "the instance survived the round trip")
        check(talk_tcp(PORT + 5, b"y\n") == b"y\n", "new connections are served")
        c.close()
        d.wait_log("EXIT echo serial=1 ")
        out = upgraded(d)  # and a good upgrade after it works
        check("0 live instances" in out, out)
        d.stop_clean()


def test_upgrade_and_reload_at_once():
    with Superd("upg-reload", {"echo": service(PORT + 6, "echo")}, (LO + 250, LO + 299)) as d:
        d.start()
        c = connect(PORT + 6)
        results = {}

        def run(verb):
            results[verb] = d.cli(verb)

        for _ in range(5):
            ts = [threading.Thread(target=run, args=(v,)) for v in ("upgrade", "reload")]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            u, r = results["upgrade"], results["reload"]
            check(u.returncode == 0 or "in progress" in u.stderr, f"upgrade: {u.stderr!r}")
            check(r.returncode == 0 or "upgrade is in progress" in r.stderr, f"reload: {r.stderr!r}")
            check(echo_once(c, b"x\n") == b"x\n", "the instance lives")
            check(talk_tcp(PORT + 6, b"y\n") == b"y\n", "serving")
        c.close()
        d.stop_clean()


def test_upgrade_with_500_live_instances():
    n = 500
    svc = service(PORT + 7, "echo", socket_extra=f"max_connections = {n + 10}\nmax_connections_per_source = 0\nbacklog = 1024")
    with Superd("upg-500", {"echo": svc}, (LO, HI)) as d:
        d.start()
        conns = []
        for _ in range(n):
            conns.append(connect(PORT + 7))
        wait_until(lambda: d.log().count("START echo") >= n, 60, f"{n} instances")
        before = len(uids_of_processes(LO, HI))
        out = upgraded(d)
        check(f"{n} live instances kept" in out, out)
        check(len(uids_of_processes(LO, HI)) == before, "every instance still runs")
        for s in conns:
            s.close()
        wait_until(lambda: d.log().count("EXIT echo") >= n, 60, "every instance reaped by the new image")
        wait_until(lambda: len(d.lease_records()) == 0, 20, "every lease returned")
        d.stop_clean()


def test_kill_9_in_the_middle_of_an_upgrade_recovers_as_a_crash_does():
    with Superd("upg-kill", {"echo": service(PORT + 8, "echo")}, (LO + 300, LO + 349)) as d:
        for attempt in range(3):
            d.start()
            conns = [connect(PORT + 8) for _ in range(3)]
            for c in conns:
                check(echo_once(c, b"x\n") == b"x\n", "served")
            up = subprocess.Popen([SUPERD, "upgrade", "-c", d.config], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            time.sleep(random.uniform(0, 0.03))
            d.kill()
            up.wait(30)
            for c in conns:
                c.close()
            d.start()
            check(talk_tcp(PORT + 8, b"y\n") == b"y\n", f"the restarted superd serves (attempt {attempt})")
            wait_until(lambda: not uids_of_processes(LO + 300, LO + 349) or False, 10, "orphans swept")
            d.stop_clean()


def test_an_in_loop_session_finishes_in_the_old_image_first():
    with Superd("upg-session", {"echo": internal_service("echo", PORT + 9)}, (LO + 350, LO + 399)) as d:
        d.start()
        c = connect(PORT + 9)
        check(echo_once(c, b"x\n") == b"x\n", "an in-loop echo session")
        up = subprocess.Popen([SUPERD, "upgrade", "-c", d.config], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        time.sleep(0.5)
        check(up.poll() is None, "the upgrade waits for the session")
        check(echo_once(c, b"y\n") == b"y\n", "the session is served meanwhile")
        c.close()
        out, err = up.communicate(timeout=20)
        check(up.returncode == 0 and "upgraded" in out, f"then it upgrades: {out!r} {err!r}")
        # One that never ends: the upgrade gives up after its bound, and serving goes on.
        c = connect(PORT + 9)
        echo_once(c, b"x\n")
        r = d.cli("upgrade")
        check(r.returncode == 1 and "in-loop sessions" in r.stderr, f"bounded wait: {r.stderr!r}")
        check(echo_once(c, b"z\n") == b"z\n" and talk_tcp(PORT + 9, b"w\n") == b"w\n", "serving goes on")
        c.close()
        d.stop_clean()


def test_an_instance_of_a_service_replaced_by_a_reload_is_handed_over_too():
    with Superd("upg-retired", {"echo": service(PORT + 12, "echo")}, (LO + 500, LO + 549)) as d:
        d.start()
        c = connect(PORT + 12)
        check(echo_once(c, b"x\n") == b"x\n", "served")
        d.write_service("echo", service(PORT + 12, "echo", extra="private_ipc = true"))
        check(d.cli("reload").returncode == 0, "reloaded: the old service retires with its instance")
        upgraded(d)
        check(echo_once(c, b"y\n") == b"y\n", "the retired service's instance answers after the upgrade")
        c.close()
        d.wait_log("EXIT echo serial=1 ")
        check(talk_tcp(PORT + 12, b"z\n") == b"z\n", "the current service serves")
        wait_until(lambda: len(d.lease_records()) == 0, 10, "every lease returned")
        d.stop_clean()


def test_syslog_of_an_instance_from_before_the_upgrade_still_arrives():
    script = service(PORT + 10, "-c", "read x; logger -t late syslog-after-$x; echo done", program="/bin/sh",
                     extra="private_devices = true")
    with Superd("upg-syslog", {"late": script}, (LO + 400, LO + 449)) as d:
        d.start()
        c = connect(PORT + 10)
        d.wait_log("START late")
        upgraded(d)
        c.sendall(b"old\n")
        c.shutdown(socket.SHUT_WR)
        check(c.recv(100).startswith(b"done"), "the instance ran on")
        c.close()
        d.wait_log("syslog-after-old")  # through the socket the new image kept
        check(talk_tcp(PORT + 10, b"new\n").startswith(b"done"), "a new instance")
        d.wait_log("syslog-after-new")
        d.stop_clean()


def test_a_running_capsule_is_handed_over():
    from test_capsules import FIRST, LAST, GLOBAL, block_procs, capsule, capsule_file, info, start
    with Superd("upg-capsule", {}, (LO + 450, LO + 499), global_extra=GLOBAL) as d:
        capsule_file(d, "beta", "echo.toml", service(PORT + 11, "echo"))
        d.start()
        c = start(d, "beta")
        conn = connect(PORT + 11)
        check(echo_once(conn, b"x\n") == b"x\n", "the capsule serves")
        out = upgraded(d)
        after = info(d, "beta")
        check(after["state"] == "running" and after["pid"] == c["pid"], f"the same capsule runs on: {after} {out}")
        check(echo_once(conn, b"y\n") == b"y\n" and talk_tcp(PORT + 11, b"z\n") == b"z\n",
              "its instance and its listener live through the upgrade")
        conn.close()
        r = capsule(d, "stop", "beta")
        check(r.returncode == 0, f"the new image stops it: {r.stderr}")
        wait_until(lambda: not block_procs(c["uids"][0], c["uids"][1]), 10, "nothing of its block left")
        check("capsule beta: stopped" in d.log(), "and reaps it")
        d.stop_clean()


if __name__ == "__main__":
    main([test_upgrade_keeps_sockets_instances_and_their_stderr,
          test_sigusr2_upgrades_and_runtime_max_keeps_its_deadline,
          test_a_missing_or_not_executable_binary_is_refused_and_serving_goes_on,
          test_a_binary_that_refuses_the_handover_leaves_the_old_image_serving,
          test_a_new_image_that_cannot_start_goes_back_to_the_old_one,
          test_upgrade_and_reload_at_once,
          test_upgrade_with_500_live_instances,
          test_kill_9_in_the_middle_of_an_upgrade_recovers_as_a_crash_does,
          test_an_in_loop_session_finishes_in_the_old_image_first,
          test_syslog_of_an_instance_from_before_the_upgrade_still_arrives,
          test_a_running_capsule_is_handed_over,
          test_an_instance_of_a_service_replaced_by_a_reload_is_handed_over_too])
