"""Real programs, as distributions ship them for xinetd, served by superd from xinetd-style
files: git daemon and rsync (stream, wait = no, user nobody) and in.tftpd (UDP, wait = yes, user
root with its own chroot). Each is fetched from with its real client over loopback and the bytes
are compared. Served both ways: `superd serve --xinetd FILE` (conversion in memory) and
`superd import-xinetd FILE -o DIR` followed by a normal serve of DIR."""
import os
import re
import subprocess
from harness import Superd, check, main, poll_until, processes_mentioning, require_root, skip

LO, HI = 78000, 78099
PORT = 28000

GIT_DAEMON = "/usr/lib/git-core/git-daemon"
RSYNC = "/usr/bin/rsync"
IN_TFTPD = "/usr/sbin/in.tftpd"
TFTP = "/usr/bin/tftp"
NOBODY, NOGROUP = 65534, 65534


def need(*paths):
    for p in paths:
        if not os.access(p, os.X_OK):
            skip(f"{p} is missing (tests/run installs git, rsync, tftpd-hpa and tftp-hpa)")


def run(argv, timeout=30, **kw):
    """A client run, bounded in time; its output is kept for the failure message."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv[0]} did not finish in {timeout}s: {e.stdout!r} {e.stderr!r}")


def stop_without_leftovers(d):
    """superd exits 0 on SIGTERM, and no program started from this test's scratch root survives
    (they run as static users, outside the dynamic range that assert_clean watches)."""
    check(d.stop() == 0, "exit 0")
    check(poll_until(lambda: not processes_mentioning(d.root), 10),
          f"programs survive superd: {processes_mentioning(d.root)}")
    d.assert_clean()


def make_bare_repo(base, content):
    """base/repo.git: a bare repository with one commit holding README = content, owned by
    nobody (git refuses a repository owned by another user: safe.directory)."""
    src = os.path.join(base, "src")
    os.makedirs(src)
    git = ["git", "-c", "user.name=superd test", "-c", "user.email=test@superd.invalid", "-c", "init.defaultBranch=main"]
    check(run(git + ["init", "-q", src]).returncode == 0, "git init")
    with open(os.path.join(src, "README"), "w") as f:
        f.write(content)
    check(run(git + ["-C", src, "add", "README"]).returncode == 0, "git add")
    check(run(git + ["-C", src, "commit", "-q", "-m", "first"]).returncode == 0, "git commit")
    exported = os.path.join(base, "export")
    os.makedirs(exported)
    check(run(git + ["clone", "-q", "--bare", src, os.path.join(exported, "repo.git")]).returncode == 0, "git clone --bare")
    for dirpath, dirnames, filenames in os.walk(exported):
        for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
            os.lchown(n, NOBODY, NOGROUP)
    os.chmod(base, 0o755)
    return exported


def test_git_daemon_from_an_xinetd_file():
    need(GIT_DAEMON, "/usr/bin/git")
    port = PORT
    with Superd("xgit", {}, (LO, HI), xinetd=f"""# as Debian's git-daemon-run would have it for xinetd
service git
{{
        type            = UNLISTED
        port            = {port}
        socket_type     = stream
        protocol        = tcp
        wait            = no
        user            = nobody
        bind            = 127.0.0.1
        flags           = IPv4
        server          = {GIT_DAEMON}
        server_args     = --inetd --export-all --base-path=@ROOT@/git/export @ROOT@/git/export
        log_on_failure  += USERID
}}
""") as d:
        content = f"hello from git, test pid {os.getpid()}\n"
        make_bare_repo(os.path.join(d.root, "git"), content)
        d.start()
        clone = os.path.join(d.root, "clone")
        r = run(["git", "clone", "-q", f"git://127.0.0.1:{port}/repo.git", clone],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": d.root, "GIT_TERMINAL_PROMPT": "0"})
        check(r.returncode == 0, f"git clone failed ({r.returncode}): {r.stderr}\n{d.log()[-3000:]}")
        with open(os.path.join(clone, "README")) as f:
            got = f.read()
        check(got == content, f"cloned README: {got!r}")
        d.wait_log("EXIT git")
        check(re.search(r"START git serial=\d+ peer=127\.0\.0\.1:\d+ uid=65534 pid=\d+", d.log()),
              f"git-daemon runs as nobody:\n{d.log()[-3000:]}")
        check(re.search(r"EXIT git serial=\d+ .*status=0", d.log()), f"git-daemon exits 0:\n{d.log()[-3000:]}")
        stop_without_leftovers(d)


RSYNC_XINETD = """service rsync
{
        disable         = no
        type            = UNLISTED
        port            = PORT
        bind            = 127.0.0.1
        socket_type     = stream
        wait            = no
        user            = nobody
        server          = /usr/bin/rsync
        server_args     = --daemon --config=@ROOT@/rsyncd.conf
        log_on_failure  += USERID
}
"""


def test_rsync_imported_then_served():
    need(RSYNC)
    port = PORT + 1
    with Superd("xrsync", {}, (LO, HI)) as d:
        mod = os.path.join(d.root, "mod")
        os.makedirs(mod)
        os.chmod(mod, 0o755)
        payload = f"rsync payload for {os.getpid()}\n" * 50
        with open(os.path.join(mod, "file.txt"), "w") as f:
            f.write(payload)
        os.chmod(os.path.join(mod, "file.txt"), 0o644)
        # rsync runs as nobody: no chroot, no uid switch, nothing to write.
        with open(os.path.join(d.root, "rsyncd.conf"), "w") as f:
            f.write(f"use chroot = no\nlog file = /dev/null\n\n[mod]\n  path = {mod}\n"
                    f"  comment = superd test module\n  read only = yes\n")
        xinetd = os.path.join(d.root, "rsync.xinetd")
        with open(xinetd, "w") as f:
            f.write(RSYNC_XINETD.replace("PORT", str(port)).replace("@ROOT@", d.root))
        conf_d = os.path.join(d.root, "conf.d")
        r = d.run_cli("import-xinetd", xinetd, "-o", conf_d)
        check(r.returncode == 0, f"import-xinetd exit {r.returncode}: {r.stderr}")
        check(os.path.exists(os.path.join(conf_d, "rsync.toml")), f"no rsync.toml in {os.listdir(conf_d)}")
        r = d.cli("check")
        check(r.returncode == 0, f"the imported file does not check: {r.stdout}{r.stderr}")
        d.start()
        r = run([RSYNC, f"rsync://127.0.0.1:{port}/"])
        check(re.search(r"^mod\s+superd test module$", r.stdout, re.M),
              f"module list ({r.returncode}): {r.stdout!r} {r.stderr!r}\n{d.log()[-3000:]}")
        dest = os.path.join(d.root, "dest")
        os.makedirs(dest)
        r = run([RSYNC, f"rsync://127.0.0.1:{port}/mod/file.txt", dest + "/"])
        check(r.returncode == 0, f"rsync fetch failed ({r.returncode}): {r.stderr}\n{d.log()[-3000:]}")
        with open(os.path.join(dest, "file.txt")) as f:
            check(f.read() == payload, "fetched file differs")
        d.wait_log("EXIT rsync", 2)
        check(len(re.findall(r"START rsync serial=\d+ peer=127\.0\.0\.1:\d+ uid=65534 ", d.log())) == 2,
              f"two instances as nobody:\n{d.log()[-3000:]}")
        stop_without_leftovers(d)


def tftp_get(port, name, dest):
    if os.path.exists(dest):
        os.unlink(dest)
    r = run([TFTP, "-m", "binary", "127.0.0.1", str(port), "-c", "get", name, dest], timeout=30)
    try:
        with open(dest, "rb") as f:
            return f.read(), r
    except OSError:
        return None, r


def test_tftp_as_a_udp_wait_mode_service():
    need(IN_TFTPD, TFTP)
    port = PORT + 2
    with Superd("xtftp", {}, (LO, HI), xinetd=f"""defaults
{{
        instances       = 60
        umask           = 022
}}

service tftp
{{
        type            = UNLISTED
        port            = {port}
        bind            = 127.0.0.1
        socket_type     = dgram
        protocol        = udp
        wait            = yes
        user            = root
        server          = {IN_TFTPD}
        server_args     = -t 2 -s @ROOT@/tftpboot
        per_source      = 11
        cps             = 100 2
        flags           = IPv4
}}
""") as d:
        boot = os.path.join(d.root, "tftpboot")
        os.makedirs(boot)
        os.chmod(boot, 0o755)
        blob = os.urandom(70000)  # 137 blocks of 512 bytes: a real transfer, not one packet
        with open(os.path.join(boot, "blob.bin"), "wb") as f:
            f.write(blob)
        os.chmod(os.path.join(boot, "blob.bin"), 0o644)
        d.start()
        got, r = tftp_get(port, "blob.bin", os.path.join(d.root, "got1"))
        check(got == blob, f"first fetch: {None if got is None else len(got)} bytes of {len(blob)}; "
                           f"tftp said {r.stdout!r} {r.stderr!r}\n{d.log()[-3000:]}")
        # in.tftpd -t 2 waits 2 s for another request, then exits; superd polls the socket again.
        d.wait_log("EXIT tftp", 1, timeout=15)
        check(d.log().count("START tftp") == 1, f"one instance so far:\n{d.log()[-3000:]}")
        got, r = tftp_get(port, "blob.bin", os.path.join(d.root, "got2"))
        check(got == blob, f"second fetch, after the first instance exited: "
                           f"{None if got is None else len(got)} bytes; {r.stdout!r} {r.stderr!r}\n{d.log()[-3000:]}")
        d.wait_log("EXIT tftp", 2, timeout=15)
        check(d.log().count("START tftp") == 2, f"a second instance served the second fetch:\n{d.log()[-3000:]}")
        check(re.search(r"START tftp serial=\d+ .*uid=0 ", d.log()), f"in.tftpd starts as root:\n{d.log()[-3000:]}")
        check(len(re.findall(r"EXIT tftp .*status=0", d.log())) == 2, f"both exit 0:\n{d.log()[-3000:]}")
        # A missing file is tftpd's answer (an error packet), not a hang: the service still works.
        got, r = tftp_get(port, "nope.bin", os.path.join(d.root, "got3"))
        check(not got, f"a missing file yields nothing: {got!r}")
        d.wait_log("EXIT tftp", 3, timeout=15)  # stopping with a live instance: test_wait_mode
        stop_without_leftovers(d)


if __name__ == "__main__":
    require_root()
    need(GIT_DAEMON, "/usr/bin/git", RSYNC, IN_TFTPD, TFTP)
    main([test_git_daemon_from_an_xinetd_file, test_rsync_imported_then_served, test_tftp_as_a_udp_wait_mode_service])
