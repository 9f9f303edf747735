"""Capsules: a whole superd as a dynamic user with a persistent home and a block of 65,536 host
UIDs (capsule_uid_range [0x71000000, 0x7107FFFF] here: eight blocks). Everything is seen from
the host: the UIDs of the block that a capsule's connections run under, its home and its owner
across stop and start, nothing of the block left after stop or after a kill -9 of the host's
superd, what a capsule's service cannot reach or do, and bad capsule configurations."""
import json
import os
import re
import signal
import socket
import subprocess
import time
from test_nss import nss_run
from harness import (Superd, check, ipc_owned, main, service, service_file, talk_tcp, toml_list, uids_of_processes,
                     wait_until)

LO, HI = 89600, 89799
PORT = 17200
FIRST, LAST = 0x71000000, 0x7107FFFF
GLOBAL = f"capsule_uid_range = [{FIRST}, {LAST}]"


def capsule_file(d, capsule, name, text):
    """A file in the capsule's .config/superd, made before its first start if need be."""
    conf = os.path.join(d.root, "lib", "capsules", capsule, ".config", "superd")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, name), "w") as f:
        f.write(text.replace("@PROBE@", d.probe).replace("@ROOT@", d.root))
    return os.path.join(conf, name)


def capsule(d, verb, *args):
    return d.run_cli("capsule", verb, "-c", d.config, *args)


def info(d, name):
    r = capsule(d, "list", "--json")
    check(r.returncode == 0, f"capsule list: {r.stderr}")
    return {c["name"]: c for c in json.loads(r.stdout)}.get(name)


def start(d, name):
    r = capsule(d, "start", name)
    check(r.returncode == 0, f"capsule start {name}: {r.returncode} {r.stderr}")
    c = info(d, name)
    check(c and c["state"] == "running", f"{name} runs: {c}")
    return c


def block_procs(lo=FIRST, hi=LAST):
    return uids_of_processes(lo, hi)


def test_connections_get_distinct_block_uids_and_the_home_persists():
    with Superd("cap-uids", {}, (LO, HI), global_extra=GLOBAL) as d:
        capsule_file(d, "alpha", "hold.toml", service(PORT, "sleep", "20"))
        capsule_file(d, "alpha", "keep.toml", service(PORT + 1, "append", extra='state_directory = "keep"'))
        d.start()
        c = start(d, "alpha")
        block = c["uids"][0]
        check(FIRST <= block <= LAST and (block - FIRST) % 65536 == 0 and c["uids"][1] == block + 65535,
              f"a block of capsule_uid_range: {c['uids']}")
        home = os.path.join(d.root, "lib", "capsules", "alpha")
        st = os.stat(home)
        check(st.st_uid == block and st.st_gid == block and st.st_mode & 0o777 == 0o711,
              f"the home is the capsule root's, 0711: {st.st_uid} {oct(st.st_mode)}")
        conns = [socket.create_connection(("127.0.0.1", PORT), timeout=10) for _ in range(2)]
        inner = [int(re.match(r"uid=(\d+),", s.recv(200).decode()).group(1)) for s in conns]
        check(len(set(inner)) == 2 and all(61184 <= u <= 65519 for u in inner), f"inside: {inner}")
        host = set(block_procs(block, block + 65535).values())
        check(host >= {block + u for u in inner} and len(host - {block}) == 2,
              f"two connections, two host UIDs of the block (block + inner): {sorted(host)} {inner}")
        check(not uids_of_processes(LO, HI), "nothing of the host's own range")
        # Names from the host, through the NSS module: capsule-NAME and capsule-NAME-N.
        rc, out = nss_run(d, "getent", "passwd", str(block))
        check(rc == 0 and out == f"capsule-alpha:x:{block}:{block}:superd dynamic user:{home}:/usr/sbin/nologin\n",
              f"getent passwd {block}: rc {rc} {out!r}")
        n = inner[0]
        rc, out = nss_run(d, "getent", "passwd", f"capsule-alpha-{n}")
        check(rc == 0 and out.startswith(f"capsule-alpha-{n}:x:{block + n}:{block + n}:superd dynamic user:/:"),
              f"by name: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "group", str(block + n))
        check(rc == 0 and out == f"capsule-alpha-{n}:x:{block + n}:\n", f"group: rc {rc} {out!r}")
        pid = next(p for p, u in block_procs(block, block + 65535).items() if u == block + n)
        rc, out = nss_run(d, "ps", "-o", "user:30=", "-p", str(pid))
        check(out.strip() == f"capsule-alpha-{n}", f"ps -o user= of a capsule's instance: {out!r}")
        rc, out = nss_run(d, "getent", "passwd")
        check(f"capsule-alpha:x:{block}:" in out, f"enumeration lists the capsule: {out[-300:]!r}")
        first = talk_tcp(PORT + 1).decode()
        check(first.strip().endswith("uid " + str(first.split()[-1])), f"append: {first!r}")
        data = os.path.join(home, ".local", "state", "private", "keep", "shared.log")
        owner = os.stat(data).st_uid
        check(block + 61184 <= os.stat(os.path.dirname(data)).st_gid <= block + 65519, "the group is the block's")
        for s in conns:
            s.close()
        r = capsule(d, "stop", "alpha")
        check(r.returncode == 0, f"stop: {r.stderr}")
        rc, out = nss_run(d, "getent", "passwd", str(block))
        check(rc == 2, f"no name once the capsule stopped: rc {rc} {out!r}")
        check(os.path.exists(data) and os.stat(data).st_uid == owner, "the home stays after stop")
        start(d, "alpha")
        check(info(d, "alpha")["uids"][0] == block, "the same block after a restart")
        again = talk_tcp(PORT + 1).decode()
        check(again.startswith(first), f"the file written in the first run is there: {again!r}")
        check(os.stat(data).st_uid == owner, "with the same owner")
        check(capsule(d, "stop", "alpha").returncode == 0, "stop")
        d.stop_clean()
        check(not block_procs(), "nothing of the capsule range")


def test_stop_with_live_connections_leaves_no_process_or_ipc_of_the_block():
    with Superd("cap-stop", {}, (LO, HI), global_extra=GLOBAL) as d:
        capsule_file(d, "beta", "ipc.toml", service(PORT + 10, "ipc-hold", "30"))
        d.start()
        block = start(d, "beta")["uids"][0]
        pid = info(d, "beta")["pid"]
        conns = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", PORT + 10), timeout=10)
            check(b"shm=" in s.recv(300), "an instance holds IPC objects")
            conns.append(s)
        seen = subprocess.run(["nsenter", "-t", str(pid), "-i", "cat", "/proc/sysvipc/shm"],
                              capture_output=True, text=True).stdout
        check(len(seen.splitlines()) == 4, f"three shm segments live in the capsule's IPC namespace:\n{seen}")
        check(len(block_procs(block, block + 65535)) >= 4, "the capsule's superd and three instances run")
        t0 = time.time()
        r = capsule(d, "stop", "beta")
        check(r.returncode == 0, f"stop with 3 live connections: {r.stderr}")
        check(not block_procs(block, block + 65535), f"no process of the block: {block_procs()}")
        check(not ipc_owned(block, block + 65535), "no host IPC object of the block")
        check(not os.path.exists(f"/proc/{pid}"), "the capsule's IPC namespace went with its last process")
        check(not os.path.exists(os.path.join(d.root, "run", "capsules", "beta")), "its runtime directory is gone")
        for s in conns:
            s.settimeout(5)
            check(s.recv(100) == b"", "the connections were closed")
        print(f"stop with 3 live connections: {1000 * (time.time() - t0):.0f} ms")
        d.stop_clean()


def test_a_capsule_service_cannot_reach_other_homes_or_the_host_or_escalate():
    look = lambda port, *paths: service(port, "ls", *paths)
    with Superd("cap-iso", {"host": service(PORT + 29, "sleep", "1", extra='state_directory = "hostdata"')},
                (LO, HI), global_extra=GLOBAL) as d:
        capsule_file(d, "gamma", "look.toml", look(PORT + 20, "@ROOT@/lib/capsules/delta", "@ROOT@/lib/private",
                                                   "@ROOT@/lib/private/hostdata", "@ROOT@/run/superd"))
        capsule_file(d, "gamma", "sys.toml", service(PORT + 21, "syscalls", extra='system_call_error_number = "EACCES"'))
        capsule_file(d, "delta", "secret.toml", service(PORT + 22, "id"))
        d.start()
        start(d, "gamma")
        start(d, "delta")
        with open(os.path.join(d.root, "lib", "capsules", "delta", "secret"), "w") as f:
            f.write("delta's")
        out = talk_tcp(PORT + 20).decode()
        check("secret" not in out and "delta's" not in out, f"another capsule's home is out of reach: {out!r}")
        # Each path is missing or refused, or (covered by an empty tmpfs) lists nothing.
        for line in out.splitlines():
            check(line.split()[-1] in ("ENOENT", "EACCES"), f"{line.split()[0]} lists something: {out!r}")
        check(f"{d.root}/lib/private/hostdata ENOENT" in out.splitlines() or
              f"{d.root}/lib/private/hostdata EACCES" in out.splitlines(),
              f"the host's boundary directories are out of reach: {out!r}")
        r = dict(l.split(" ", 1) for l in talk_tcp(PORT + 21).decode().splitlines())
        for call in ("mount", "unshare", "unshare_user", "setuid0"):
            check(r.get(call) not in (None, "ok"), f"{call} must be refused in a capsule: {r}")
        # The capsule's own superd, seen from the host: no capability in the host's namespace.
        pid = info(d, "gamma")["pid"]
        with open(f"/proc/{pid}/status") as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines())
        uids = st["Uid"].split()
        check(all(int(u) == info(d, "gamma")["uids"][0] for u in uids), f"its root is the block's first UID: {uids}")
        check(st["NoNewPrivs"].strip() == "1", "no_new_privs")
        with open(f"/proc/{pid}/mountinfo") as f:
            mounts = f.read()
        root = [l for l in mounts.splitlines() if l.split()[4] == "/"]
        check(root and " ro," in " " + root[0].split()[5] + ",", f"the OS is read-only inside: {root}")
        check(any(l.split()[4] == "/tmp" and "tmpfs" in l for l in mounts.splitlines()), "a private /tmp")
        for n in ("gamma", "delta"):
            check(capsule(d, "stop", n).returncode == 0, f"stop {n}")
        d.stop_clean()


def test_bad_capsule_configurations_fail_that_capsule_only():
    with Superd("cap-bad", {"hostsvc": service(PORT + 39, "id")}, (LO, HI), global_extra=GLOBAL) as d:
        capsule_file(d, "good", "who.toml", service(PORT + 30, "id"))
        bad = capsule_file(d, "broken", "typo.toml", "[socket]\nlisten = [\"127.0.0.1:17231\"]\nmax_conections = 3\n"
                           "[service]\nexec = [\"/bin/true\"]\n")
        d.start()
        start(d, "good")
        r = capsule(d, "start", "broken")
        check(r.returncode != 0 and f"{bad}:3:1: socket.max_conections: unknown key" in r.stderr,
              f"a bad file: its position in the start's error: {r.returncode} {r.stderr!r}")
        check(info(d, "broken")["state"] == "stopped", "the broken capsule does not run")
        check(b"uid=" in talk_tcp(PORT + 30) and b"uid=" in talk_tcp(PORT + 39), "the host and the other capsule serve")
        os.unlink(bad)
        for text, want in (('[superd]\nruntime_root = "/run"\n', "superd.runtime_root: not allowed in a capsule"),
                           ('[superd]\ndynamic_uid_range = [1000, 2000]\n', "superd.dynamic_uid_range: not allowed")):
            conf = capsule_file(d, "broken", "superd.toml", text)
            r = capsule(d, "start", "broken")
            check(r.returncode != 0 and re.search(re.escape(conf) + r":2:\d+: " + re.escape(want), r.stderr), f"{text!r}: {r.stderr!r}")
        os.unlink(conf)
        for listen, want in ((["127.0.0.1:80"], "ports 1024 and above only"),
                             (["/tmp/out.sock"], "UNIX sockets live under"), (["@abstract"], "no abstract sockets")):
            f = capsule_file(d, "broken", "l.toml", service(listen, "id"))
            r = capsule(d, "start", "broken")
            check(r.returncode != 0 and f"{f}:2:" in r.stderr and want in r.stderr, f"{listen}: {r.stderr!r}")
        os.unlink(f)
        f = capsule_file(d, "broken", "l.toml", service([f"@ROOT@/run/capsules/broken/s.sock"], "id"))
        start(d, "broken")  # a UNIX socket in its own runtime directory is fine
        for name, why in (("a/b", 'contains "/"'), ("..", '".."'), ("", "empty")):
            r = capsule(d, "start", name)
            check(r.returncode != 0 and why in r.stderr, f"capsule name {name!r}: {r.stderr!r}")
        r = capsule(d, "start", "good")
        check(r.returncode != 0 and "already running" in r.stderr, f"start twice: {r.stderr!r}")
        r = capsule(d, "stop", "nothere")
        check(r.returncode != 0 and "is not running" in r.stderr, f"stop of a stopped one: {r.stderr!r}")
        d.stop_clean()  # stops both capsules with it
        check(not block_procs(), "superd's own stop ends its capsules")


def test_kill9_of_the_host_superd_leaves_no_capsule_process():
    with Superd("cap-kill", {}, (LO, HI), global_extra=GLOBAL) as d:
        capsule_file(d, "eps", "hold.toml", service(PORT + 40, "sleep", "60"))
        d.start()
        block = start(d, "eps")["uids"][0]
        check(nss_run(d, "getent", "passwd", str(block))[0] == 0, "named while it runs")
        s = socket.create_connection(("127.0.0.1", PORT + 40), timeout=10)
        s.recv(200)
        check(len(block_procs(block, block + 65535)) >= 2, "the capsule and an instance run")
        d.kill()
        wait_until(lambda: not block_procs(block, block + 65535), 10, "the capsule dies with the host's superd")
        d.start()
        check(not block_procs(), "nothing of the capsules after the restart")
        check(not os.listdir(os.path.join(d.root, "run", "superd", "capsules")), "its record was swept")
        check(not os.path.exists(os.path.join(d.root, "run", "capsules", "eps")), "and its runtime directory")
        rc, out = nss_run(d, "getent", "passwd", str(block))
        check(rc == 2, f"no name left for the killed capsule: rc {rc} {out!r}")
        check(info(d, "eps")["state"] == "stopped", "and it is not running")
        s.close()
        d.stop_clean()


def test_run_in_a_capsule_list_status_enable():
    with Superd("cap-run", {}, (LO, HI), global_extra=GLOBAL) as d:
        capsule_file(d, "zeta", "who.toml", service(PORT + 50, "id"))
        d.start()
        block = start(d, "zeta")["uids"][0]
        r = d.run_cli("run", "-c", d.config, "--capsule", "zeta", "--", "/bin/sh", "-c", "id -u; echo $HOME")
        uid = int(r.stdout.split()[0]) if r.returncode == 0 else -1
        check(r.returncode == 0 and 61184 <= uid <= 65519, f"superd run --capsule: {r.returncode} {r.stdout!r} {r.stderr!r}")
        r = d.run_cli("run", "-c", d.config, "--capsule", "zeta", "--", "/bin/sh", "-c", "exit 7")
        check(r.returncode == 7, f"the exit status comes back: {r.returncode}")
        r = d.run_cli("run", "-c", d.config, "--capsule", "nope", "--", "/bin/true")
        check(r.returncode == 125, f"a capsule that does not run: {r.returncode} {r.stderr!r}")
        r = capsule(d, "status", "zeta")
        check(r.returncode == 0 and "service who" in r.stdout and "running" in r.stdout, f"status: {r.stdout!r}")
        j = json.loads(capsule(d, "status", "zeta", "--json").stdout)
        check(j["capsule"]["uids"][0] == block and j["status"]["services"][0]["name"] == "who", f"status --json: {j}")
        check(capsule(d, "enable", "zeta").returncode == 0, "enable")
        r = capsule(d, "enable", "zeta")
        check(r.returncode != 0 and "already enabled" in r.stderr, f"enable twice: {r.stderr!r}")
        check(capsule(d, "list").stdout.count("(enabled)") == 1, "list shows it enabled")
        d.stop_clean()
        d.start()
        wait_until(lambda: (info(d, "zeta") or {}).get("state") == "running", 10, "the enabled capsule starts with superd")
        check(b"uid=" in talk_tcp(PORT + 50), "and serves")
        check(capsule(d, "disable", "zeta").returncode == 0, "disable")
        r = capsule(d, "disable", "zeta")
        check(r.returncode != 0 and "is not enabled" in r.stderr, f"disable twice: {r.stderr!r}")
        d.stop_clean()
        d.start()
        check(info(d, "zeta")["state"] == "stopped", "a disabled capsule stays stopped")
        d.stop_clean()


if __name__ == "__main__":
    main([test_connections_get_distinct_block_uids_and_the_home_persists,
          test_stop_with_live_connections_leaves_no_process_or_ipc_of_the_block,
          test_a_capsule_service_cannot_reach_other_homes_or_the_host_or_escalate,
          test_bad_capsule_configurations_fail_that_capsule_only,
          test_kill9_of_the_host_superd_leaves_no_capsule_process,
          test_run_in_a_capsule_list_status_enable])
