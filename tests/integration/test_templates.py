"""Templates (conf.d/NAME@.toml) and their instances: made by a link or a file of their own, or
started at run time; specifiers expanded per instance in every string key, listen addresses
included; `superd start|stop|enable|disable` with their errors; a wait-mode instance's named
lease hashed from its full name, so each instance keeps its UID and its data across restarts."""
import json
import os
import re
import socket
from harness import (Superd, check, listen_inode, main, service_file, talk_tcp, talk_unix, toml_list,
                     wait_until)

LO, HI = 89400, 89599
PORT = 17100


def template(listen, *args, extra="", socket_extra=""):
    """A template file: the probe with `args`, listening on `listen` (specifiers kept)."""
    sock = f"listen = {toml_list([listen])}" + ("\n" + socket_extra if socket_extra else "")
    return service_file(sock, f"exec = {toml_list(['@PROBE@', *args])}", extra)


def env_of(out):
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


def status(d):
    r = d.cli("status", "--json")
    check(r.returncode == 0, f"status: {r.stderr}")
    return json.loads(r.stdout)


def services(d):
    return {s["name"]: s for s in status(d)["services"]}


def test_links_and_files_make_instances_with_their_specifiers():
    env = 'environment = { INST = "%i", UNESC = "%I", PREFIX = "%p", FULL = "%n", PCT = "100%%", C = "x%c" }'
    with Superd("tpl-spec", {"foobard@": template("@ROOT@/run/foobard/%i.sock", "env", extra=env)},
                (LO, HI)) as d:
        conf = os.path.join(d.root, "conf.d")
        os.symlink("foobard@.toml", os.path.join(conf, "foobard@acme.toml"))
        os.symlink("foobard@.toml", os.path.join(conf, "foobard@a\\x2db-c.toml"))
        d.write_service("foobard@globex", template("@ROOT@/run/foobard/%i.sock", "env",
                                                   extra='environment = { OWN = "%i" }'))
        d.start()
        e = env_of(talk_unix(os.path.join(d.root, "run", "foobard", "acme.sock")))
        check(e.get("INST") == "acme" and e.get("UNESC") == "acme" and e.get("PREFIX") == "foobard" and
              e.get("FULL") == "foobard@acme" and e.get("PCT") == "100%", f"specifiers of foobard@acme: {e}")
        check(re.fullmatch(r"x\d+", e.get("C", "")), f"%c is still the serial: {e.get('C')}")
        e = env_of(talk_unix(os.path.join(d.root, "run", "foobard", "a\\x2db-c.sock")))
        check(e.get("INST") == "a\\x2db-c" and e.get("UNESC") == "a-b/c", f"%i and %I of an escaped name: {e}")
        e = env_of(talk_unix(os.path.join(d.root, "run", "foobard", "globex.sock")))
        check(e.get("OWN") == "globex" and "INST" not in e, f"a file of its own replaces the template: {e}")
        d.wait_log("START foobard@acme ")
        st = status(d)
        names = {s["name"]: s["origin"] for s in st["services"]}
        check(names == {"foobard@acme": "link", "foobard@a\\x2db-c": "link", "foobard@globex": "file"},
              f"the template is never served itself: {names}")
        tpl = [t for t in st["templates"] if t["name"] == "foobard@"]
        check(tpl and sorted(tpl[0]["instances"]) == sorted(names), f"status lists the instances: {st['templates']}")
        text = d.cli("status").stdout
        check(re.search(r"template foobard@ +3 running: ", text), f"status text: {text}")
        d.stop_clean()


def test_start_stop_enable_disable_and_their_errors():
    port = PORT + 10
    with Superd("tpl-cli", {"web@": template("127.0.0.1:%i", "id")}, (LO, HI)) as d:
        d.start()
        conf = os.path.join(d.root, "conf.d")
        r = d.cli("start", f"web@{port}")
        check(r.returncode == 0, f"start: {r.returncode} {r.stderr}")
        check(b"uid=" in talk_tcp(port), "the started instance serves")
        d.wait_log(f"START web@{port} ")
        r = d.cli("start", f"web@{port}")
        check(r.returncode != 0 and "already running" in r.stderr, f"start twice: {r.returncode} {r.stderr!r}")
        r = d.cli("stop", f"web@{port}")
        check(r.returncode == 0 and refused(port), f"stop: {r.returncode} {r.stderr}")
        r = d.cli("stop", f"web@{port}")
        check(r.returncode != 0 and "is not running" in r.stderr, f"stop twice: {r.stderr!r}")
        for name, why in ((f"nope@{port}", "no template nope@"), ("web@", "not an instance name"),
                          ("web@a/b", 'contains "/"'), ("web@a..b", 'contains ".."'),
                          ("web@" + "7" * 201, "longer than 200"), ("web@a b", "contains ' '")):
            for verb in ("start", "enable"):
                r = d.cli(verb, name)
                check(r.returncode != 0 and why in r.stderr, f"{verb} {name[:30]}: {r.returncode} {r.stderr!r}")
        # %i that makes an invalid address: the template's file, line, column and key.
        r = d.cli("start", "web@notaport")
        tpl = os.path.join(conf, "web@.toml")
        check(r.returncode != 0 and re.search(re.escape(tpl) + r":2:\d+: socket\.listen: bad port \"notaport\"", r.stderr),
              f"an invalid address from %i: {r.stderr!r}")
        # enable: a link; served after a reload (or with --now); disable keeps it until stop.
        p2 = port + 1
        r = d.cli("enable", f"web@{p2}")
        link = os.path.join(conf, f"web@{p2}.toml")
        check(r.returncode == 0 and os.readlink(link) == "web@.toml", f"enable: {r.stderr} {r.stdout}")
        check(refused(p2), "enable without --now starts nothing")
        r = d.cli("enable", f"web@{p2}")
        check(r.returncode != 0 and "already enabled" in r.stderr, f"enable twice: {r.stderr!r}")
        check(d.cli("check").returncode == 0, "the config with the link checks")
        check(d.cli("reload").returncode == 0 and b"uid=" in talk_tcp(p2), "a reload serves the enabled instance")
        check(services(d)[f"web@{p2}"]["origin"] == "link", "its origin: link")
        r = d.cli("disable", f"web@{p2}")
        check(r.returncode == 0 and not os.path.lexists(link), f"disable: {r.stderr}")
        check(d.cli("reload").returncode == 0 and b"uid=" in talk_tcp(p2), "disabled, it runs until stop")
        r = d.cli("disable", f"web@{p2}")
        check(r.returncode != 0 and "is not enabled" in r.stderr, f"disable twice: {r.stderr!r}")
        check(d.cli("stop", f"web@{p2}").returncode == 0 and refused(p2), "then stop ends it")
        p3 = port + 2
        r = d.cli("enable", "--now", f"web@{p3}")
        check(r.returncode == 0 and b"uid=" in talk_tcp(p3), f"enable --now: {r.stderr}")
        r = d.cli("start", f"web@{p3}")
        check(r.returncode != 0 and "already running" in r.stderr, f"start of an enabled running one: {r.stderr!r}")
        r = d.cli("disable", "--now", f"web@{p3}")
        check(r.returncode == 0 and refused(p3) and not os.path.lexists(os.path.join(conf, f"web@{p3}.toml")),
              f"disable --now: {r.stderr}")
        # A file of its own is not enable's to remove.
        d.write_service(f"web@{p3}", template("127.0.0.1:%i", "id"))
        r = d.cli("disable", f"web@{p3}")
        check(r.returncode != 0 and "a file of its own" in r.stderr, f"disable of a file: {r.stderr!r}")
        os.unlink(os.path.join(conf, f"web@{p3}.toml"))
        # Started at run time: survives a reload with its listening socket, not a restart.
        p4 = port + 3
        check(d.cli("start", f"web@{p4}").returncode == 0, "start another")
        inode = listen_inode(p4)
        check(d.cli("reload").returncode == 0 and listen_inode(p4) == inode and b"uid=" in talk_tcp(p4),
              "a reload keeps a run-time instance and its socket")
        # A service of the files stopped at run time stays stopped over a reload.
        d.write_service("plain", template(f"127.0.0.1:{port + 4}", "id"))
        check(d.cli("reload").returncode == 0 and b"uid=" in talk_tcp(port + 4), "plain served")
        check(d.cli("stop", "plain").returncode == 0 and refused(port + 4), "plain stopped")
        check(d.cli("reload").returncode == 0 and refused(port + 4), "still stopped after a reload")
        check(d.cli("start", "plain").returncode == 0 and b"uid=" in talk_tcp(port + 4), "plain started again")
        d.stop_clean()
        d.start()
        check(refused(p4), "a run-time start does not outlive superd")
        d.stop_clean()


def test_stop_ends_live_instances_and_leaves_nothing():
    port = PORT + 20
    with Superd("tpl-stop", {"hold@": template("127.0.0.1:%i", "sleep", "60")}, (LO, HI)) as d:
        d.start()
        check(d.cli("start", f"hold@{port}").returncode == 0, "start")
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        wait_until(lambda: len([r for r in d.lease_records() if r[1] > 0]) == 3, 10, "3 live instances")
        r = d.cli("stop", f"hold@{port}")
        check(r.returncode == 0, f"stop with live connections: {r.stderr}")
        wait_until(lambda: not d.lease_records(), 15, "the instances ended and their leases released")
        d.assert_clean()
        for c in conns:
            c.close()
        check(refused(port), "not listening")
        d.stop_clean()


def test_wait_mode_instances_keep_their_uid_and_state_across_restarts():
    p1, p2 = PORT + 30, PORT + 31
    tpl = template("127.0.0.1:%i", "accept", "1", "3000", socket_extra="accept = false",
                   extra='state_directory = "keeper/%i"')
    with Superd("tpl-wait", {"keeper@": tpl}, (LO, HI)) as d:
        conf = os.path.join(d.root, "conf.d")
        for p in (p1, p2):
            os.symlink("keeper@.toml", os.path.join(conf, f"keeper@{p}.toml"))

        def ids():
            out = {}
            for p in (p1, p2):
                line = talk_tcp(p).decode()
                m = re.match(r"uid=(\d+),", line)
                check(m, f"not a probe line: {line!r}")
                user = line.rsplit("user=", 1)[1].strip()
                out[p] = (int(m.group(1)), user)
            return out

        d.start()
        first = ids()
        check(first[p1][0] != first[p2][0], f"two instances, two UIDs: {first}")
        check(first[p1][1] == f"keeper-{p1}", f"USER is the instance's name made valid: {first[p1][1]}")
        dirs = {p: os.path.join(d.root, "lib", "private", "keeper", str(p)) for p in (p1, p2)}
        groups = {p: os.stat(dirs[p]).st_gid for p in (p1, p2)}
        check(groups[p1] != groups[p2] and all(LO <= g <= HI for g in groups.values()),
              f"each instance's directory has its own group: {groups}")
        for p in (p1, p2):
            with open(os.path.join(dirs[p], "data"), "w") as f:
                f.write(str(p))
        d.wait_log("EXIT keeper@", 2)
        d.stop_clean()
        d.start()
        check(ids() == first, f"the same UIDs after a restart: {first}")
        for p in (p1, p2):
            with open(os.path.join(dirs[p], "data")) as f:
                check(f.read() == str(p) and os.stat(dirs[p]).st_gid == groups[p], f"keeper@{p} keeps its data")
        check(d.cli("reload").returncode == 0, "reload")
        check(ids() == first, f"and after a reload: {first}")
        d.wait_log("EXIT keeper@", 4)
        d.stop_clean()


def test_bad_instances_in_the_files_are_named():
    with Superd("tpl-bad", {"web@": template("127.0.0.1:%i", "id")}, (LO, HI)) as d:
        conf = os.path.join(d.root, "conf.d")
        os.symlink("web@.toml", os.path.join(conf, "web@nope.toml"))
        r = d.cli("check")
        tpl = os.path.join(conf, "web@.toml")
        check(r.returncode == 2 and re.search(re.escape(tpl) + r":2:\d+: socket\.listen: bad port \"nope\"", r.stderr),
              f"an enabled instance with a bad address: {r.returncode} {r.stderr!r}")
        os.unlink(os.path.join(conf, "web@nope.toml"))
        os.symlink("web@.toml", os.path.join(conf, "web@a..b.toml"))
        r = d.cli("check")
        check(r.returncode == 2 and 'web@a..b.toml' in r.stderr and 'contains ".."' in r.stderr,
              f"a bad instance file name: {r.stderr!r}")
        os.unlink(os.path.join(conf, "web@a..b.toml"))
        check(d.cli("check").returncode == 0, f"the template alone checks: {d.cli('check').stderr}")


if __name__ == "__main__":
    main([test_links_and_files_make_instances_with_their_specifiers,
          test_start_stop_enable_disable_and_their_errors,
          test_stop_ends_live_instances_and_leaves_nothing,
          test_wait_mode_instances_keep_their_uid_and_state_across_restarts,
          test_bad_instances_in_the_files_are_named])
