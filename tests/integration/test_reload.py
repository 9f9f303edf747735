"""Reload (SIGHUP and `superd reload`): unchanged listening sockets stay open (same socket),
live instances are not touched, changed and new services take effect, and a bad config leaves
the running one in place with the problems named."""
import os
import re
import signal
import socket
import time
from harness import Superd, check, listen_inode, main, service, talk_tcp, uids_of_processes

LO, HI = 77000, 77099
PORT = 27000


def test_reload_keeps_sockets_and_instances():
    with Superd("reload", {"a": service(PORT, "id"),
                           "b": service(PORT + 1, "sleep", "3600", extra='state_directory = "b"')}, (LO, HI)) as d:
        d.start()
        inode_a, inode_b = listen_inode(PORT), listen_inode(PORT + 1)
        live = socket.create_connection(("127.0.0.1", PORT + 1), timeout=10)
        d.wait_log("START b")
        live_uid = set(uids_of_processes(LO, HI).values())
        d.write_service("b", service(PORT + 1, "env", extra='state_directory = "b"\nenvironment = { NEW = "yes" }'))
        d.write_service("c", service(PORT + 2, "id"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: 3 services")
        check(listen_inode(PORT) == inode_a and listen_inode(PORT + 1) == inode_b,
              "unchanged listeners must stay the same sockets")
        check(talk_tcp(PORT + 2).decode().startswith("uid="), "a new service serves")
        check("NEW=yes" in talk_tcp(PORT + 1).decode(), "a changed service serves with its new config")
        check(live_uid <= set(uids_of_processes(LO, HI).values()), "the live instance was not touched")
        # A problem that concerns more than one file (c takes a's address): `superd reload` names
        # it and the running configuration stays. (A service's own bad file is skipped instead:
        # test_operations.)
        d.write_service("c", f'[socket]\nlisten = ["127.0.0.1:{PORT}"]\n[service]\nexec = ["@PROBE@"]\n')
        r = d.cli("reload")
        check(r.returncode == 2 and re.search(r"c\.toml:2:11: socket\.listen: .* overlaps", r.stderr),
              f"{r.returncode} {r.stderr}")
        check(talk_tcp(PORT + 2).decode().startswith("uid="), "the running configuration stays")
        os.remove(os.path.join(d.root, "conf.d", "c.toml"))
        r = d.cli("reload")
        check(r.returncode == 0, r.stderr)
        time.sleep(0.2)
        try:
            talk_tcp(PORT + 2, timeout=2)
            check(False, "a removed service must stop listening")
        except OSError:
            pass
        live.close()
        d.wait_log("EXIT b")
        d.stop_clean()


if __name__ == "__main__":
    main([test_reload_keeps_sockets_and_instances])
