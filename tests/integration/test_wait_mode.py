"""Wait mode (accept = false, xinetd's wait = yes): one instance gets the listening socket and
accepts connections itself; superd stops polling until it exits, then polls again. The instance's
UID is a named lease hashed from "wait:NAME", so every instance of the service gets the same
one. And static identities (dynamic_user = false): user, group, supplementary_groups."""
import grp
import pwd
import re
import time
from harness import Superd, check, main, parallel, processes_mentioning, service, talk_tcp

LO, HI = 80000, 80099
PORT = 30000


def waiter(port, n, idle_ms, extra_service="", fd=None):
    """A wait-mode probe that accepts `n` connections (on fd `fd`, if given) and exits after
    `idle_ms` without one."""
    fd_arg = [str(fd)] if fd is not None else []
    return service(port, "accept", str(n), str(idle_ms), *fd_arg, socket_extra="accept = false", extra=extra_service)


def report(out):
    """The probe's line: {"uid": [r,e,s], "gid": [r,e,s], "groups": [...], "inst": random id of the
    instance (its pid may be 1 in a PID namespace), "conn": K}."""
    m = re.match(r"uid=(\d+),(\d+),(\d+) gid=(\d+),(\d+),(\d+) groups=([\d,]*) pid=(\d+) inst=([0-9a-f]+) conn=(\d+) "
                 r"listen_fds=(\S+) user=(\S+)\n$",
                 out.decode(errors="replace"))
    check(m, f"not a probe accept line: {out!r}")
    g = m.groups()
    return {"uid": [int(x) for x in g[0:3]], "gid": [int(x) for x in g[3:6]],
            "groups": sorted(int(x) for x in g[6].split(",") if x), "pid": int(g[7]), "inst": g[8],
            "conn": int(g[9]), "listen_fds": g[10], "user": g[11]}


def starts(d, svc):
    return d.log().count(f"START {svc} ")


def test_one_instance_serves_several_connections_then_superd_polls_again():
    port = PORT
    with Superd("wait", {"waiter": waiter(port, 3, 5000)}, (LO, HI)) as d:
        d.start()
        first = [report(talk_tcp(port)) for _ in range(3)]
        insts = {r["inst"] for r in first}
        uids = {tuple(r["uid"]) for r in first}
        check(len(insts) == 1, f"one instance answers all three: insts {insts}")
        check([r["conn"] for r in first] == [1, 2, 3], f"counts {[r['conn'] for r in first]}")
        check(len(uids) == 1, f"one UID: {uids}")
        uid = first[0]["uid"][0]
        check(LO <= uid <= HI and first[0]["uid"] == [uid] * 3, f"a dynamic UID of the range: {first[0]['uid']}")
        check(first[0]["gid"] == [uid] * 3, f"GID = UID: {first[0]['gid']}")
        check(first[0]["listen_fds"] == "-", "stdio = socket sets no LISTEN_FDS")
        check(first[0]["user"] == "waiter", f"USER is the named lease's user name: {first[0]['user']}")
        # The instance exits after three connections; the next one starts a new instance.
        d.wait_log("EXIT waiter ", 1)
        check(re.search(r"EXIT waiter .*status=0", d.log()), d.log()[-2000:])
        check(starts(d, "waiter") == 1, f"one START for three connections:\n{d.log()[-2000:]}")
        again = report(talk_tcp(port))
        check(again["inst"] not in insts and again["conn"] == 1, f"a new instance: {again}")
        check(again["uid"][0] == uid, f"the same hashed named lease: {again['uid'][0]} != {uid}")
        d.wait_log("START waiter ", 2)
        # Connections that arrive together wait in the backlog for the one instance.
        outs = [report(o) for o in parallel(lambda i: talk_tcp(port, timeout=20), 2)]
        check(len({o["inst"] for o in outs} | {again["inst"]}) == 1, f"the live instance takes them: {outs} {again}")
        d.wait_log("EXIT waiter ", 2)
        check(starts(d, "waiter") == 2, f"two instances for six connections:\n{d.log()[-2000:]}")
        d.stop_clean()


def test_an_idle_instance_exits_and_the_next_connection_starts_another():
    port = PORT + 1
    with Superd("waitidle", {"idler": waiter(port, 100, 700)}, (LO, HI)) as d:
        d.start()
        a = report(talk_tcp(port))
        t0 = time.time()
        d.wait_log("EXIT idler ", 1, timeout=10)
        check(time.time() - t0 < 5, "the idle timeout ended the instance")
        b = report(talk_tcp(port))
        check(a["inst"] != b["inst"] and b["conn"] == 1, f"a second instance after the first one exited: {a} {b}")
        check(a["uid"] == b["uid"], f"stable UID across instances: {a['uid']} {b['uid']}")
        d.wait_log("EXIT idler ", 2, timeout=10)
        # superd polls again after each exit: a third round, still one instance per round.
        c = report(talk_tcp(port))
        check(c["inst"] not in (a["inst"], b["inst"]) and c["uid"] == a["uid"], f"third instance: {c}")
        d.wait_log("EXIT idler ", 3, timeout=10)
        check(starts(d, "idler") == 3, d.log()[-2000:])
        check(d.proc.poll() is None, "superd runs")
        d.stop_clean()


def test_listen_fds_in_wait_mode():
    port = PORT + 2
    with Superd("waitfds", {"fds": waiter(port, 1, 2000, extra_service='stdio = "listen-fds"', fd=3)}, (LO, HI)) as d:
        d.start()
        r = report(talk_tcp(port))
        check(r["listen_fds"] == "1", f"the listening socket is fd 3, LISTEN_FDS=1: {r}")
        d.wait_log("EXIT fds ")
        check(re.search(r"EXIT fds .*status=0", d.log()), d.log()[-2000:])
        d.stop_clean()


def test_stop_while_wait_mode_instances_run():
    """SIGTERM with a live wait-mode instance, dynamic, then static (user = "nobody"), each alone
    in its daemon: superd ends it within timeout_stop and exits 0, every UID back."""
    port = PORT + 6
    nobody = pwd.getpwnam("nobody").pw_uid
    for name, extra, want_uid in (("lingerer", "", None),
                                  ("statics", 'dynamic_user = false\nuser = "nobody"', nobody)):
        d = Superd("waitstop", {name: waiter(port, 100, 20000, extra_service='timeout_stop = "1s"\n' + extra)},
                   (LO, HI))
        try:
            d.start()
            r = report(talk_tcp(port))
            check(r["uid"][0] == want_uid if want_uid is not None else LO <= r["uid"][0] <= HI, f"served: {r}")
            check("EXIT" not in d.log(), "the instance waits for more connections")
            t0 = time.time()
            rc = d.stop(timeout=20)
            check(rc == 0, f"{name}: exit {rc}")
            check(time.time() - t0 < 10, f"{name}: stopping took {time.time() - t0:.1f}s")
            check(f"EXIT {name} " in d.log(), f"the end is logged:\n{d.log()[-2000:]}")
            check("stopped: every instance ended" in d.log(), d.log()[-2000:])
            check(not processes_mentioning(d.root), f"probes survive: {processes_mentioning(d.root)}")
            d.assert_clean()
        except Exception as e:
            raise type(e)(f"{name}: {e}\n{d.log()[-2000:]}") from e
        finally:
            d.close()


def test_static_identity_user_group_and_supplementary_groups():
    try:
        nobody = pwd.getpwnam("nobody")
        adm, users = grp.getgrnam("adm"), grp.getgrnam("users")
    except KeyError as e:
        check(False, f"this host lacks a standard user or group: {e}")
    port = PORT + 3
    with Superd("static", {
        "asnobody": waiter(port, 1, 2000, extra_service='dynamic_user = false\nuser = "nobody"\n'
                                                          'supplementary_groups = ["adm", 100]'),
        "withgroup": waiter(port + 1, 1, 2000, extra_service=f'dynamic_user = false\nuser = {nobody.pw_uid}\n'
                                                              'group = "users"'),
        "accepting": service(port + 2, "id", extra='dynamic_user = false\nuser = "nobody"'),
    }, (LO, HI)) as d:
        d.start()
        r = report(talk_tcp(port))
        check(r["uid"] == [nobody.pw_uid] * 3, f"user = nobody: {r['uid']}")
        check(r["gid"] == [nobody.pw_gid] * 3, f"the user's primary group by default: {r['gid']}")
        check(r["groups"] == sorted({adm.gr_gid, users.gr_gid}),
              f"supplementary_groups = [adm, 100] exactly: {r['groups']}")
        r = report(talk_tcp(port + 1))
        check(r["uid"] == [nobody.pw_uid] * 3, f"user by number: {r['uid']}")
        check(r["gid"] == [users.gr_gid] * 3, f"group = users: {r['gid']}")
        check(r["groups"] in ([], [users.gr_gid]), f"no supplementary groups beyond the group: {r['groups']}")
        out = talk_tcp(port + 2).decode()
        check(out.startswith(f"uid={nobody.pw_uid},{nobody.pw_uid},{nobody.pw_uid} gid={nobody.pw_gid},"),
              f"a static user with accept = true too: {out!r}\n{d.log()[-2000:]}")
        d.wait_log("EXIT asnobody ")
        d.wait_log("EXIT withgroup ")
        d.wait_log("EXIT accepting ")
        check(re.search(rf"START asnobody .*uid={nobody.pw_uid} ", d.log()), d.log()[-2000:])
        check(d.stop() == 0, "exit 0")
        check(not processes_mentioning(d.root), f"probes survive: {processes_mentioning(d.root)}")
        d.assert_clean()


if __name__ == "__main__":
    main([test_one_instance_serves_several_connections_then_superd_polls_again,
          test_an_idle_instance_exits_and_the_next_connection_starts_another, test_listen_fds_in_wait_mode,
          test_stop_while_wait_mode_instances_run,
          test_static_identity_user_group_and_supplementary_groups])
