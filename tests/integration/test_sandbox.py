"""The sandbox, checked from inside the instance: read-only OS and /home, private /tmp, no
capabilities, no_new_privs, seccomp, the state-directory boundary shared by concurrent
instances, the runtime directory, private networking, and superd run."""
import os
import re
import shutil
import stat
import subprocess
from harness import service as svc, Superd, check, fields, main, parallel, talk_tcp

LO, HI = 76000, 76199
PORT = 26000


def lines(b):
    return dict(l.split(" ", 1) for l in b.decode().splitlines() if " " in l)


def test_os_and_home_are_read_only_and_tmp_is_private():
    with Superd("ro", {"w": svc(PORT, "write", "/etc", "/usr", "/home", "/root", "/tmp", "/var/tmp", "/dev/shm",
                                "/srv"),
                       "tmp": svc(PORT + 1, "tmp", "700")}, (LO, HI)) as d:
        d.start()
        r = lines(talk_tcp(PORT))
        for p in ("/etc", "/usr", "/home", "/root", "/srv"):
            check(r.get(p) in ("EROFS", "EACCES"), f"write to {p} must fail: {r}")
        for p in ("/tmp", "/var/tmp", "/dev/shm"):
            check(r.get(p) == "ok", f"{p} must be writable: {r}")
        outs = parallel(lambda i: talk_tcp(PORT + 1).decode(), 2)
        for o in outs:
            marks = [l for l in o.splitlines() if l.startswith("tmp mark-")]
            vmarks = [l for l in o.splitlines() if l.startswith("vartmp mark-")]
            check("created tmp vartmp" in o, o)
            check(len(marks) == 1 and len(vmarks) == 1, f"each instance sees only its own /tmp: {o}")
        check(not any(n.startswith("mark-") for n in os.listdir("/tmp")), "an instance's /tmp leaked to the host")
        check(not any(n.startswith("mark-") for n in os.listdir("/var/tmp")), "/var/tmp leaked to the host")
        d.stop_clean()


def test_no_capabilities_no_new_privs_seccomp_and_blocked_syscalls():
    with Superd("priv", {"st": svc(PORT + 2, "status"),
                         "sys": svc(PORT + 3, "syscalls", extra='system_call_error_number = "EACCES"')},
                (LO, HI)) as d:
        d.start()
        st = talk_tcp(PORT + 2).decode()
        f = dict(re.split(r":\s*", l, 1) for l in st.splitlines())
        for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            check(int(f[k], 16) == 0, f"{k} must be 0: {st}")
        check(f["NoNewPrivs"] == "1" and f["Seccomp"] == "2", st)
        r = lines(talk_tcp(PORT + 3))
        check(r["mount"] == "EACCES" and r["unshare"] == "EACCES" and r["ptrace"] == "EACCES", f"{r}")
        check(r["unshare_user"] != "ok" and r["setuid0"] != "ok", f"no user namespace, no setuid(0): {r}")
        check(r["x32_getpid"] != "ok", f"the x32 ABI must be refused: {r}")
        check(r["getpid"] == "ok" and r["socket_inet"] == "ok", f"ordinary calls must work: {r}")
        check(r["mount_magic"] in ("EPERM", "EACCES"), f"mount() in the zygote's own form still fails: {r}")
        check(r["chmod_suid"] in ("EACCES", "EPERM"), f"setting a setuid bit must fail: {r}")
        d.stop_clean()


def test_a_setuid_root_binary_gains_nothing():
    with Superd("suid", {}, (LO, HI)) as d:
        suid = os.path.join(d.root, "bin", "probe-suid")
        shutil.copy(d.probe, suid)
        os.chown(suid, 0, 0)
        os.chmod(suid, 0o4755)
        d.write_service("s", svc(PORT + 4, "id", program=suid))
        d.start()
        out = talk_tcp(PORT + 4).decode()
        f = fields(out)
        check("0" not in f["uid"].split(","), f"a setuid-root binary must not give euid 0: {out}")
        d.stop_clean()


def test_state_directory_persists_is_shared_and_walled_off():
    with Superd("state", {
        "shared": svc(PORT + 5, "append", "400", extra='state_directory = "shared"'),
        "other": svc(PORT + 6, "cat", "@ROOT@/lib/shared/shared.log", "@ROOT@/lib/private/shared/shared.log",
                      extra='state_directory = "other"'),
        "rt": svc(PORT + 7, "runtime", extra='runtime_directory = "rt"'),
    }, (LO, HI)) as d:
        d.start()
        outs = parallel(lambda i: talk_tcp(PORT + 5).decode(), 10)
        final = talk_tcp(PORT + 5).decode()
        uids = re.findall(r"uid (\d+)", final)
        check(len(uids) == 11 and len(set(uids)) == 11, f"11 writers with 11 UIDs share one file: {final}\n{outs}")
        priv = os.path.join(d.root, "lib", "private")
        st = os.stat(priv)
        check(stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0, f"private/ must be 0700 root: {oct(st.st_mode)}")
        check(os.readlink(os.path.join(d.root, "lib", "shared")) == "private/shared", "symlink to private/NAME")
        logf = os.path.join(priv, "shared", "shared.log")
        owners = {os.stat(logf).st_uid}
        check(len(owners) == 1 and os.stat(logf).st_mode & 0o020, "the file stays group-writable")
        other = talk_tcp(PORT + 6).decode()
        check("uid " not in other and "ENOENT" in other, f"another service must not read it: {other}")
        rt = talk_tcp(PORT + 7).decode()
        m = re.match(r"runtime (\S+) ok owner=(\d+)", rt)
        check(m and m.group(1) == os.path.join(d.root, "run", "rt") and LO <= int(m.group(2)) <= HI, rt)
        check(os.listdir(os.path.join(d.root, "run", "rt")) == [], "the runtime directory is gone after the instance")
        check(d.stop() == 0, "exit 0")
        # Persistence: a new daemon sees the data (and needs no recursive chown: same group).
        d.start()
        again = talk_tcp(PORT + 5).decode()
        check(len(re.findall(r"uid (\d+)", again)) == 12, f"data persists across restarts: {again}")
        d.stop_clean()


def test_private_network_shows_only_lo():
    with Superd("net", {"n": svc(PORT + 8, "netdev", extra="private_network = true")}, (LO, HI)) as d:
        d.start()
        out = talk_tcp(PORT + 8).decode()
        check(out.split() == ["if", "lo"], f"only lo: {out}")
        d.stop_clean()


def test_superd_run_pipeline_exit_status_and_unit():
    with Superd("run", {}, (LO, HI)) as d:
        d.start()
        p = subprocess.run(f"printf 'b\\na\\nb\\n' | {os.environ['SUPERD']} run -c {d.config} -- sort -u | tr a-z A-Z",
                           shell=True, capture_output=True, text=True, timeout=30)
        check(p.returncode == 0 and p.stdout == "A\nB\n", f"pipeline: {p.returncode} {p.stdout!r} {p.stderr}")
        r = d.cli("run", "--", "sh", "-c", "exit 7")
        check(r.returncode == 7, f"exit status passed back: {r.returncode} {r.stderr}")
        r = d.cli("run", "--", d.probe, "segv")
        check(r.returncode == 128 + 11, f"death by signal gives 128+N: {r.returncode} {r.stderr}")
        r1 = d.cli("run", "--unit", "wuff", "-p", "state_directory=wuff", "--", "sh", "-c",
                       'id -u; echo data > "$STATE_DIRECTORY/keep"')
        r2 = d.cli("run", "--unit", "wuff", "-p", "state_directory=wuff", "--", "sh", "-c",
                       'id -u; cat "$STATE_DIRECTORY/keep"')
        check(r1.returncode == 0 and r2.returncode == 0, f"{r1.stderr} {r2.stderr}")
        u1, u2 = r1.stdout.split()[0], r2.stdout.split()[0]
        check(u1 == u2 and LO <= int(u1) <= HI, f"--unit keeps its UID: {u1} {u2}")
        check(r2.stdout.split()[1] == "data", f"--unit keeps its data: {r2.stdout}")
        r = d.cli("run", "--", "sh", "-c", "touch /etc/x")
        check(r.returncode != 0, "superd run is sandboxed too")
        r = d.cli("run", "-p", "state_directory=../x", "--", "true")
        check(r.returncode == 125 and "state_directory" in r.stderr, f"bad property named: {r.stderr}")
        d.stop_clean()


def test_paths_devices_home_and_ambient_capabilities():
    with Superd("paths", {}, (LO, HI)) as d:
        for sub in ("rw", "ro-src", "hidden", "bind-src"):
            os.makedirs(os.path.join(d.root, "data", sub))
            os.chmod(os.path.join(d.root, "data", sub), 0o777)
        os.chmod(os.path.join(d.root, "data"), 0o755)
        with open(os.path.join(d.root, "data", "hidden", "secret"), "w") as f:
            f.write("s")
        data = os.path.join(d.root, "data")
        d.write_service("w", svc(PORT + 9, "write", f"{data}/rw", f"{data}/ro-src", f"{data}/bind-src",
                                 extra=f"""read_write_paths = ["{data}/rw"]
bind_paths = ["{data}/rw:{data}/bind-src"]
"""))
        d.write_service("h", svc(PORT + 10, "ls", "/home", f"{data}/hidden", "/dev",
                                 extra=f"""protect_home = "tmpfs"
inaccessible_paths = ["{data}/hidden"]
private_devices = true
"""))
        d.write_service("cap", svc(PORT + 11, "bind", "81", extra="""capability_bounding_set = ["CAP_NET_BIND_SERVICE"]
ambient_capabilities = ["CAP_NET_BIND_SERVICE"]"""))
        d.write_service("nocap", svc(PORT + 12, "bind", "82"))
        d.start()
        r = lines(talk_tcp(PORT + 9))
        check(r[f"{data}/rw"] == "ok", f"read_write_paths: {r}")
        check(r[f"{data}/ro-src"] == "EROFS", f"everything else read-only: {r}")
        check(r[f"{data}/bind-src"] == "ok", f"bind_paths puts rw/ over bind-src/: {r}")
        out = talk_tcp(PORT + 10).decode()
        check(not [l for l in out.splitlines() if l.startswith("/home ")], f"/home must be an empty tmpfs: {out}")
        check(f"{data}/hidden EACCES" in out, f"inaccessible: {out}")
        devs = sorted(l.split()[1] for l in out.splitlines() if l.startswith("/dev "))
        check({"null", "zero", "urandom", "shm"} <= set(devs) and "sda" not in devs and "kmsg" not in devs,
              f"private /dev: {devs}")
        check(talk_tcp(PORT + 11) == b"bind ok\n", "ambient CAP_NET_BIND_SERVICE allows port 81")
        check(talk_tcp(PORT + 12) == b"bind EACCES\n", "without it, port 82 is refused")
        d.stop_clean()


if __name__ == "__main__":
    main([test_os_and_home_are_read_only_and_tmp_is_private, test_no_capabilities_no_new_privs_seccomp_and_blocked_syscalls,
          test_a_setuid_root_binary_gains_nothing, test_state_directory_persists_is_shared_and_walled_off,
          test_private_network_shows_only_lo, test_superd_run_pipeline_exit_status_and_unit,
          test_paths_devices_home_and_ambient_capabilities])
