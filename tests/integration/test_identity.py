"""Identity, environment and fd layout, checked from inside the service."""
import os
from harness import Superd, check, fields, main, parallel, service, talk_tcp, talk_unix

LO, HI = 71000, 71099
PORT = 21000


def test_twenty_concurrent_connections_get_twenty_distinct_uids():
    with Superd("uids", {"probe": service(PORT, "sleep", "1")}, (LO, HI)) as d:
        d.start()
        outs = parallel(lambda i: talk_tcp(PORT).decode(), 20)
        ids = []
        for o in outs:
            # uid=R,E,S gid=R,E,S groups=N pid=P
            f = fields(o)
            uids = {int(x) for x in f["uid"].split(",")}
            gids = {int(x) for x in f["gid"].split(",")}
            check(len(uids) == 1 and uids == gids, f"uid must equal gid, all of real/effective/saved: {o}")
            check(f["groups"] == "0", f"supplementary groups must be empty: {o}")
            check(f["pid"] == "1", f"the service must be PID 1 of its own PID namespace: {o}")
            ids.append(uids.pop())
        check(len(set(ids)) == 20, f"20 connections, {len(set(ids))} distinct UIDs: {sorted(ids)}")
        check(all(LO <= u <= HI for u in ids), f"UIDs out of range: {ids}")
        check(d.log().count("START probe") == 20, d.log())
        d.wait_log("EXIT probe", 20)
        d.stop_clean()


ALLOWED_TCP = {"REMOTE_ADDR", "REMOTE_PORT", "REMOTE_HOST", "PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP",
               "TCPLOCALPORT", "USER", "LOGNAME", "HOME", "PATH"}


def environment(out):
    """The probe's "env" report, one NAME=VALUE a line, as a dict."""
    return dict(line.split("=", 1) for line in out.splitlines())


def test_environment_is_exactly_as_specified():
    listen = [f"127.0.0.1:{PORT + 1}", f"[::1]:{PORT + 1}", "@ROOT@/env.sock", f"@superd-test-env-{os.getpid()}"]
    with Superd("env", {"probe": service(listen, "env", extra='environment = { GREETING = "hello world", '
                                         'CONN = "%n-%c" }\npass_environment = ["PASSED_ON"]')}, (LO, HI)) as d:
        env = {"PATH": "/usr/bin:/bin", "SECRET_TOKEN": "must-not-leak", "PASSED_ON": "yes", "LANG": "C"}
        d.start(env=env)
        out = talk_tcp(PORT + 1).decode()
        got = environment(out)
        check(set(got) == ALLOWED_TCP | {"GREETING", "PASSED_ON", "CONN"}, f"unexpected variable set: {sorted(got)}")
        check(got["CONN"] == "probe-1", f"%n and %c (the connection serial) expanded: {got['CONN']}")
        check(got["PROTO"] == "TCP" and got["REMOTE_ADDR"] == "127.0.0.1" and got["TCPLOCALPORT"] == str(PORT + 1), out)
        check(got["REMOTE_HOST"] == "127.0.0.1", f"xinetd's REMOTE_HOST: {out}")
        check(got["REMOTE_PORT"] == got["TCPREMOTEPORT"] and int(got["REMOTE_PORT"]) > 0, out)
        check(got["USER"] == got["LOGNAME"] and got["USER"].startswith("superd-"), out)
        check(got["HOME"] == "/" and got["GREETING"] == "hello world" and got["PASSED_ON"] == "yes", out)
        check("must-not-leak" not in out and "LANG" not in got, out)
        check(got["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
              f"systemd's fixed default PATH, not superd's own (/usr/bin:/bin): {got['PATH']}")

        out6 = talk_tcp(PORT + 1, host="::1").decode()
        got6 = environment(out6)
        check(got6["PROTO"] == "TCP6" and got6["REMOTE_ADDR"] == "::1", out6)

        outu = talk_unix(os.path.join(d.root, "env.sock")).decode()
        gotu = environment(outu)
        check(gotu["PROTO"] == "UNIX" and gotu["UNIXREMOTEEUID"] == "0", outu)
        check(int(gotu["UNIXREMOTEPID"]) == os.getpid(), outu)
        check("REMOTE_ADDR" not in gotu, outu)
        outa = talk_unix(f"\0superd-test-env-{os.getpid()}").decode()  # the abstract listener
        check("PROTO=UNIX" in outa and "CONN=probe-4" in outa, outa)
        d.stop_clean()


def test_fd_layout_socket_mode():
    with Superd("fds", {"probe": service(PORT + 2, "fds")}, (LO, HI)) as d:
        d.start()
        out = talk_tcp(PORT + 2).decode()
        fds = dict(line.split()[1:3] for line in out.splitlines())
        check(fds == {"0": "socket", "1": "socket", "2": "pipe"}, f"fds: {fds}")
        d.stop_clean()


def test_fd_layout_listen_fds_mode():
    with Superd("fds3", {"probe": service(PORT + 3, "fds3", extra='stdio = "listen-fds"')}, (LO, HI)) as d:
        d.start()
        out = talk_tcp(PORT + 3).decode()
        lines = out.splitlines()
        fds = dict(l.split()[1:3] for l in lines if l.startswith("fd "))
        # fd 4 is the probe's own dup of fd 3, used to write this report.
        fds.pop("4", None)
        check(fds == {"0": "null", "1": "null", "2": "pipe", "3": "socket"}, f"fds: {fds}")
        check("LISTEN_FDS=1 LISTEN_PID=1 LISTEN_FDNAMES=connection getpid=1" in out, out)
        d.stop_clean()


def test_stderr_reaches_the_log_with_service_and_instance():
    with Superd("stderr", {"probe": service(PORT + 4, "stderr")}, (LO, HI)) as d:
        d.start()
        check(talk_tcp(PORT + 4) == b"ok\n", "probe output")
        d.wait_log("EXIT probe")
        check("probe[1] uid=" in d.log() and "probe says hello on stderr" in d.log(), d.log())
        check(d.stop() == 0, "exit 0")


if __name__ == "__main__":
    main([test_twenty_concurrent_connections_get_twenty_distinct_uids, test_environment_is_exactly_as_specified,
          test_fd_layout_socket_mode, test_fd_layout_listen_fds_mode,
          test_stderr_reaches_the_log_with_service_and_instance])
