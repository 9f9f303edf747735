"""serve --xinetd and SIGHUP: the xinetd file is converted again on reload; listening sockets
that did not change stay the same sockets, a live wait-mode instance is left alone (and keeps
its socket), new services start, and a broken file is refused with its xinetd file and line
while the running configuration stays."""
import re
import socket
import signal
import time
from harness import Superd, check, listen_inode, main, poll_until, processes_mentioning, talk_tcp

LO, HI = 84000, 84099
PORT = 18000  # below the ephemeral range (32768-60999)


def xinetd(extra="", env="A=1"):
    return f"""defaults
{{
	instances = 20
}}

service idsvc
{{
	type        = UNLISTED
	port        = {PORT}
	socket_type = stream
	protocol    = tcp
	wait        = no
	bind        = 127.0.0.1
	server      = @PROBE@
	server_args = env
	env         = {env}
	user        = nobody
}}

service waiter
{{
	type        = UNLISTED
	port        = {PORT + 1}
	socket_type = stream
	protocol    = tcp
	wait        = yes
	bind        = 127.0.0.1
	server      = @PROBE@
	server_args = accept 50 20000
	user        = nobody
}}
{extra}
"""


def test_reload_from_xinetd_keeps_sockets_and_instances():
    with Superd("xreload", {}, (LO, HI), xinetd=xinetd()) as d:
        d.start()
        check("A=1" in talk_tcp(PORT).decode(), "idsvc serves with env A=1")
        first = talk_tcp(PORT + 1).decode()
        check(re.search(r"conn=1 ", first), f"the wait-mode instance answers: {first!r}")
        inode_id, inode_wait = listen_inode(PORT), listen_inode(PORT + 1)
        live = set(processes_mentioning(d.probe + " accept 50 20000"))
        check(len(live) == 1, f"the wait-mode instance lives: {live}")
        new_service = f"""
service added
{{
	type        = UNLISTED
	port        = {PORT + 2}
	socket_type = stream
	wait        = no
	bind        = 127.0.0.1
	server      = @PROBE@
	server_args = id
	user        = nobody
}}
"""
        with open(d.xinetd_path, "w") as f:
            f.write(xinetd(new_service, env="A=2").replace("@PROBE@", d.probe))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: 3 services")
        check(listen_inode(PORT) == inode_id and listen_inode(PORT + 1) == inode_wait,
              "unchanged listeners stay the same sockets")
        check("A=2" in talk_tcp(PORT).decode(), "a changed service serves with its new settings")
        check(talk_tcp(PORT + 2).decode().startswith("uid="), "a new service serves")
        check(live == set(processes_mentioning(d.probe + " accept 50 20000")), "the wait-mode instance was not touched")
        second = talk_tcp(PORT + 1).decode()
        check(re.search(r"conn=2 ", second), f"the same live instance takes the next client: {second!r}")
        check(d.log().count("START waiter ") == 1, d.log()[-3000:])

        # A service whose program is gone: that one is skipped, named at its xinetd line; the
        # others keep serving (as xinetd disables just that service).
        with open(d.xinetd_path, "w") as f:
            f.write(xinetd(new_service.replace("@PROBE@", "/nonexistent/probe")).replace("@PROBE@", d.probe))
        r = d.cli("reload")
        check(r.returncode == 0, f"reload skips the broken service: {r.returncode} {r.stdout} {r.stderr}")
        d.wait_log("/nonexistent/probe")
        check(re.search(r"xinetd\.conf:\d+:\d+: service\.exec\[0\]: \"/nonexistent/probe\".*is not served", d.log()),
              f"the problem names the xinetd file: {d.log()[-1500:]}")
        time.sleep(0.2)
        check("USER=" in talk_tcp(PORT).decode(), "the other services keep serving")
        with socket.socket() as s:
            check(s.connect_ex(("127.0.0.1", PORT + 2)) != 0, "the broken one is not served")
        rc = d.stop()
        check(rc == 0, f"exit 0: {rc}")
        check(not processes_mentioning(d.root), "no probe survives")
        d.assert_clean()


def test_a_static_users_instance_dies_with_a_killed_superd():
    """A killed superd cannot sweep a static UID on restart (it is not in the pool), so such an
    instance carries PR_SET_PDEATHSIG: it ends with superd instead of running on unowned."""
    with Superd("xpdeath", {}, (LO, HI), xinetd=xinetd()) as d:
        d.start()
        check(re.search(r"conn=1 ", talk_tcp(PORT + 1).decode()), "the wait-mode instance answers")
        check(len(processes_mentioning(d.probe + " accept 50 20000")) == 1, "it lives")
        d.kill()
        check(poll_until(lambda: not processes_mentioning(d.probe + " accept 50 20000"), 5, interval=0.02),
              "the instance died with superd")


def test_dynamic_user_yes_in_defaults_gives_each_connection_its_own_uid():
    """superd's one extension to the xinetd format: `dynamic_user = yes` (xinetd ignores it as an
    unknown attribute), here in defaults{}, turns user = nobody into a fresh UID per connection."""
    text = xinetd().replace("defaults\n{{\n".replace("{{", "{"), "defaults\n{\n\tdynamic_user = yes\n")
    with Superd("xdyn", {}, (LO, HI), xinetd=text) as d:
        d.start()
        uids = set()
        for _ in range(3):
            out = talk_tcp(PORT).decode()
            m = re.search(r"^USER=superd-(\d+)$", out, re.M)
            check(m, f"a dynamic user: {out!r}")
            uids.add(int(m.group(1)))
        check(len(uids) == 3 and all(LO <= u <= HI for u in uids), f"three connections, three UIDs: {uids}")
        d.wait_log("EXIT idsvc ", 3)
        d.stop_clean()


if __name__ == "__main__":
    main([test_reload_from_xinetd_keeps_sockets_and_instances, test_a_static_users_instance_dies_with_a_killed_superd,
          test_dynamic_user_yes_in_defaults_gives_each_connection_its_own_uid])
