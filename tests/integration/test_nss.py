"""The NSS module, libnss_superd.so.2, through the real glibc: getent and ps in a private mount
namespace whose /etc/nsswitch.conf says `passwd: files superd` (the machine's own file is never
touched), with the module loaded from the build tree (LD_LIBRARY_PATH) and pointed at the test's
runtime root ($SUPERD_NSS_LEASES). Names appear while a lease lives and go when it ends."""
import os
import subprocess
import threading
import time
import socket
from harness import Superd, check, main, service, skip, talk_tcp, wait_until

LO, HI = 89200, 89399
PORT = 17000
NSS_LIBDIR = os.environ.get("NSS_LIBDIR", "")
NSS_STRESS = os.environ.get("NSS_STRESS", "")


def nss_run(d, *cmd, leases=None):
    """Runs cmd with nsswitch naming the module; returns (exit code, stdout)."""
    check(os.path.exists(os.path.join(NSS_LIBDIR, "libnss_superd.so.2")), f"no module in {NSS_LIBDIR}")
    conf = os.path.join(d.root, "nsswitch.conf")
    with open(conf, "w") as f:
        f.write("passwd: files superd\ngroup: files superd\n")
    env = dict(os.environ, LD_LIBRARY_PATH=NSS_LIBDIR,
               SUPERD_NSS_LEASES=leases or os.path.join(d.root, "run", "superd", "dynamic-uid"))
    script = 'mount --bind "$0" /etc/nsswitch.conf && exec "$@"'
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, conf, *cmd],
                       env=env, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode()


def live_uids(d, n):
    wait_until(lambda: len([r for r in d.lease_records() if r[1] > 0]) >= n, 10, f"{n} live leases")
    return [r for r in d.lease_records() if r[1] > 0]


def hold(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.recv(200)  # the probe's id line: the instance is running
    return s


def test_by_number_name_enumeration_group_and_ps_while_live_and_gone_after():
    with Superd("nss", {"sleeper": service(PORT, "sleep", "4")}, (LO, HI)) as d:
        d.start()
        conn = hold(PORT)
        rec = live_uids(d, 1)[0]
        uid, pid = rec[0], rec[1]
        name = f"superd-{uid}"
        rc, out = nss_run(d, "getent", "passwd", str(uid))
        check(rc == 0 and out == f"{name}:x:{uid}:{uid}:superd dynamic user:/:/usr/sbin/nologin\n",
              f"getent passwd {uid}: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "passwd", name)
        check(rc == 0 and out.startswith(f"{name}:x:{uid}:"), f"by name: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "group", str(uid))
        check(rc == 0 and out == f"{name}:x:{uid}:\n", f"group: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "passwd")
        check(rc == 0 and f"{name}:x:{uid}:" in out and out.startswith("root:"), f"enumeration: {out[-500:]!r}")
        rc, out = nss_run(d, "ps", "-o", "user=", "-p", str(pid))
        check(rc == 0 and out.strip() == name, f"ps -o user= -p {pid}: rc {rc} {out!r}")
        rc, out = nss_run(d, "stat", "-c", "%U", f"/proc/{pid}")
        check(rc == 0 and out.strip() == name, f"stat of the instance's /proc dir: {out!r}")
        conn.close()
        wait_until(lambda: not d.lease_records(), 15, "the lease released")
        for args in (("passwd", str(uid)), ("passwd", name), ("group", str(uid))):
            rc, out = nss_run(d, "getent", *args)
            check(rc == 2 and out == "", f"after release, getent {' '.join(args)}: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "passwd")
        check(name not in out, "not enumerated after release")
        d.stop_clean()


def test_named_leases_and_shared_directory_groups_by_name():
    """A wait-mode instance's named lease is the service's name made valid (as USER says); a
    service with a state directory has a group of its name, which is a group and not a user."""
    accept = service(PORT + 3, "accept", "2", "6000", socket_extra="accept = false")
    with Superd("nss-named", {"wuff.dog": accept,
                              "keeper": service(PORT + 4, "sleep", "30", extra='state_directory = "keeper"')},
                (LO, HI)) as d:
        d.start()
        line = talk_tcp(PORT + 3).decode()
        uid = next(r[0] for r in d.lease_records() if r[1] > 0)
        check(f"uid={uid},{uid},{uid} " in line and line.endswith(" user=wuff-dog\n"), f"USER of the instance: {line!r}")
        rc, out = nss_run(d, "getent", "passwd", "wuff-dog")
        check(rc == 0 and out == f"wuff-dog:x:{uid}:{uid}:superd dynamic user:/:/usr/sbin/nologin\n",
              f"getent passwd wuff-dog: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "passwd", str(uid))
        check(rc == 0 and out.startswith("wuff-dog:x:"), f"by number: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "group", "keeper")
        check(rc == 0 and out.startswith("keeper:x:"), f"the shared-directory group by name: rc {rc} {out!r}")
        gid = int(out.split(":")[2])
        st = os.stat(os.path.join(d.root, "lib", "private", "keeper"))
        check(st.st_gid == gid and LO <= gid <= HI, f"the group owns the state directory: {st.st_gid} != {gid}")
        rc, out = nss_run(d, "getent", "group", str(gid))
        check(rc == 0 and out == f"keeper:x:{gid}:\n", f"the group by number: rc {rc} {out!r}")
        for args in (("passwd", "keeper"), ("passwd", str(gid))):
            rc, out = nss_run(d, "getent", *args)
            check(rc == 2, f"a group-only lease is no user: getent {' '.join(args)}: rc {rc} {out!r}")
        rc, out = nss_run(d, "getent", "passwd")
        check("wuff-dog:x:" in out and "keeper:" not in out, f"enumeration lists users only: {out[-400:]!r}")
        rc, out = nss_run(d, "getent", "group")
        check(f"keeper:x:{gid}:" in out and f"wuff-dog:x:{uid}:" in out, f"group enumeration: {out[-400:]!r}")
        d.stop_clean()


def test_missing_truncated_or_foreign_names_file_is_not_found():
    with Superd("nss-bad", {"sleeper": service(PORT + 1, "sleep", "60")}, (LO, HI)) as d:
        d.start()
        conn = hold(PORT + 1)
        uid = live_uids(d, 1)[0][0]
        names = os.path.join(d.root, "run", "superd", "dynamic-uid", "names")
        fake = os.path.join(d.root, "fake", "dynamic-uid")
        os.makedirs(fake)
        fake_names = os.path.join(fake, "names")
        rc, out = nss_run(d, "getent", "passwd", str(uid), leases=fake)
        check(rc == 2 and out == "", f"missing file: rc {rc} {out!r}")
        with open(names, "rb") as f:
            data = f.read()
        for cut in (0, 10, 64, 64 + 20, 64 + (uid - LO) * 48 + 30):
            with open(fake_names, "wb") as f:
                f.write(data[:cut])
            rc, out = nss_run(d, "getent", "passwd", str(uid), leases=fake)
            check(rc == 2 and out == "", f"names file cut at {cut} bytes: rc {rc} {out!r}")
        with open(fake_names, "wb") as f:
            f.write(b"NOTNAMES" + data[8:])
        rc, out = nss_run(d, "getent", "passwd", str(uid), leases=fake)
        check(rc == 2, f"wrong magic: rc {rc} {out!r}")
        with open(fake_names, "wb") as f:
            f.write(data)
        rc, out = nss_run(d, "getent", "passwd", str(uid), leases=fake)
        check(rc == 0 and out.startswith(f"superd-{uid}:"), f"a whole copy answers: rc {rc} {out!r}")
        # One process: the module keeps the file open, yet sees it removed, replaced, cut, and its
        # descriptor closed by the program and the number reused for another file.
        script = f"""
import os, pwd, shutil
def look():
    try:
        return pwd.getpwuid({uid}).pw_name
    except KeyError:
        return "-"
seen = [look()]
os.unlink({fake_names!r}); seen.append(look())
shutil.copy({names!r}, {fake_names!r}); seen.append(look())
with open({fake_names!r}, "r+b") as f:
    f.truncate(40)
seen.append(look())
shutil.copy({names!r}, {fake_names!r}); seen.append(look())
os.closerange(3, 1024)
other = [os.open("/dev/zero", os.O_RDONLY) for _ in range(8)]
seen.append(look())
print(" ".join(seen))
"""
        rc, out = nss_run(d, "python3", "-c", script, leases=fake)
        want = " ".join([f"superd-{uid}", "-", f"superd-{uid}", "-", f"superd-{uid}", f"superd-{uid}"])
        check(rc == 0 and out.strip() == want, f"one process through changes of the file: rc {rc} {out!r} != {want!r}")
        conn.close()
        d.stop_clean()


def test_lookups_in_threads_while_1000_connections_come_and_go():
    if not NSS_STRESS:
        skip("NSS_STRESS not set; run through meson test")
    with Superd("nss-stress", {"quick": service(PORT + 2, "id")}, (LO, HI)) as d:
        d.start()
        result = {}

        def lookups():
            result["run"] = nss_run(d, NSS_STRESS, str(LO), str(HI), "20", "4")

        t = threading.Thread(target=lookups)
        t.start()
        served = 0
        deadline = time.time() + 120
        while served < 1000 and time.time() < deadline:
            threads = [threading.Thread(target=talk_tcp, args=(PORT + 2,)) for _ in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            served += len(threads)
        t.join(90)
        check(served >= 1000, f"only {served} connections in 120 s")
        rc, out = result.get("run", (None, ""))
        print(f"stress: {out.strip()}")
        check(rc == 0 and "torn=0" in out, f"nss_stress: rc {rc} {out!r}")
        found = int(out.split("found=")[1].split()[0])
        check(found > 0, f"no live lease was ever seen by a lookup: {out!r}")
        d.stop_clean()


if __name__ == "__main__":
    main([test_by_number_name_enumeration_group_and_ps_while_live_and_gone_after,
          test_named_leases_and_shared_directory_groups_by_name,
          test_missing_truncated_or_foreign_names_file_is_not_found,
          test_lookups_in_threads_while_1000_connections_come_and_go])
