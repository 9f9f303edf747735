"""UNIX listen paths under directories other users can write. A user planted a symlink as a
parent directory of a listen path in a world-writable directory: superd (root) then replaced
root's own socket in a 0700 directory with its 0666 socket, and unlinked it when the service went.
superd must resolve listen paths without following symlinks, refuse parents others can tamper
with, and remove at shutdown only the socket file it created itself."""
import contextlib
import os
import pwd
import signal
import socket
import stat
from harness import Superd, check, internal_service, main, talk_unix

LO, HI = 87050, 87099
NOBODY = pwd.getpwnam("nobody").pw_uid


def echo_on(path, extra=""):
    return internal_service("echo", listen=path, socket_extra=extra)


def start_fails(d, needle):
    """superd must refuse to start, saying `needle`."""
    data = d.start(expect_ready=False)
    check(data != b"READY\n", f"superd started:\n{d.log()[-2000:]}")
    rc = d.wait_exit(timeout=30)
    check(rc != 0, f"exit status {rc}")
    check(needle in d.log(), f"the log does not say {needle!r}:\n{d.log()[-2000:]}")


def root_socket(path):
    """A listening socket of the test's (root's) own at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    return s


def test_symlinked_parent_is_refused_and_roots_socket_kept():
    with Superd("lpsym", {}, (LO, HI)) as d, contextlib.ExitStack() as at_end:
        world = os.path.join(d.root, "world")
        secret = os.path.join(d.root, "secret")
        os.mkdir(world)
        os.chmod(world, 0o1777)
        os.mkdir(secret)
        os.chmod(secret, 0o700)
        at_end.enter_context(root_socket(os.path.join(secret, "s.sock")))
        os.chmod(os.path.join(secret, "s.sock"), 0o600)
        before = os.lstat(os.path.join(secret, "s.sock"))
        link = os.path.join(world, "link")
        os.symlink(secret, link)  # planted by nobody, in the world-writable directory
        os.lchown(link, NOBODY, NOBODY)
        d.write_service("hijack", echo_on(os.path.join(link, "s.sock")))
        start_fails(d, f"parent {link} is a symlink")
        after = os.lstat(os.path.join(secret, "s.sock"))
        check((after.st_ino, after.st_mode) == (before.st_ino, before.st_mode),
              f"root's socket was replaced: inode {before.st_ino} -> {after.st_ino}, mode {oct(after.st_mode)}")
        check(os.listdir(secret) == ["s.sock"], f"secret holds {os.listdir(secret)}")
        d.assert_clean()


def test_parents_others_can_write_or_own_are_refused():
    with Superd("lpperm", {}, (LO, HI)) as d:
        open777 = os.path.join(d.root, "open777")
        os.mkdir(open777)
        os.chmod(open777, 0o777)
        d.write_service("open", echo_on(os.path.join(open777, "s.sock")))
        start_fails(d, f"parent {open777} is writable by others without the sticky bit")
        check(os.listdir(open777) == [], "nothing was bound there")
        os.remove(os.path.join(d.root, "conf.d", "open.toml"))

        group = os.path.join(d.root, "group")
        os.makedirs(os.path.join(group, "sub"))
        os.chmod(group, 0o775)  # an ancestor, not the socket's own directory
        d.write_service("group", echo_on(os.path.join(group, "sub", "s.sock")))
        start_fails(d, f"parent {group} is writable by others without the sticky bit")
        os.remove(os.path.join(d.root, "conf.d", "group.toml"))

        theirs = os.path.join(d.root, "theirs")
        os.mkdir(theirs)
        os.chown(theirs, NOBODY, NOBODY)
        d.write_service("theirs", echo_on(os.path.join(theirs, "s.sock")))
        start_fails(d, f"parent {theirs} is owned by uid {NOBODY}")
        os.remove(os.path.join(d.root, "conf.d", "theirs.toml"))

        # Allowed: a sticky world-writable parent, a parent of socket_user's own, and new parents,
        # which are made 0755 root.
        world = os.path.join(d.root, "world")
        os.mkdir(world)
        os.chmod(world, 0o1777)
        d.write_service("sticky", echo_on(os.path.join(world, "ok.sock")))
        d.write_service("owned", echo_on(os.path.join(theirs, "s.sock"), extra='socket_user = "nobody"\nsocket_mode = "0600"'))
        d.write_service("fresh", echo_on(os.path.join(d.root, "new", "a", "s.sock")))
        d.start()
        check(talk_unix(os.path.join(world, "ok.sock"), b"sticky") == b"sticky", "echo under a sticky directory")
        check(talk_unix(os.path.join(d.root, "new", "a", "s.sock"), b"fresh") == b"fresh", "echo under new parents")
        st = os.lstat(os.path.join(theirs, "s.sock"))
        check(stat.S_ISSOCK(st.st_mode) and st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o600,
              f"socket_user's socket: uid {st.st_uid} mode {oct(st.st_mode)}")
        for p in (os.path.join(d.root, "new"), os.path.join(d.root, "new", "a")):
            st = os.lstat(p)
            check(stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755,
                  f"{p}: uid {st.st_uid} mode {oct(st.st_mode)}")
        check(d.stop() == 0, "exit 0")
        check(not os.path.exists(os.path.join(world, "ok.sock")), "superd removes the socket it bound")
        d.assert_clean()


def test_a_socket_superd_did_not_create_is_not_unlinked():
    with Superd("lpkeep", {"echo": echo_on("@ROOT@/run2/s.sock")}, (LO, HI)) as d, contextlib.ExitStack() as at_end:
        path = os.path.join(d.root, "run2", "s.sock")
        d.start()
        check(talk_unix(path, b"a") == b"a", "superd's socket answers")
        os.unlink(path)
        at_end.enter_context(root_socket(path))  # somebody else's socket at the same path now
        ino = os.lstat(path).st_ino
        check(d.stop() == 0, "exit 0")
        check(os.path.exists(path) and os.lstat(path).st_ino == ino, "superd removed a socket it did not create")
        d.assert_clean()


def test_reload_that_reopens_a_path_keeps_the_new_socket():
    with Superd("lpreload", {"echo": echo_on("@ROOT@/run3/s.sock")}, (LO, HI)) as d:
        path = os.path.join(d.root, "run3", "s.sock")
        d.start()
        old = os.lstat(path).st_ino
        d.write_service("echo", echo_on(path, extra="backlog = 17"))  # a new listener on the same path
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: 1 services")
        check(os.path.exists(path) and os.lstat(path).st_ino != old,
              f"after the reload {path} {'is the old socket' if os.path.exists(path) else 'is gone'}")
        check(talk_unix(path, b"b") == b"b", "the new socket answers")
        check(d.stop() == 0, "exit 0")
        check(not os.path.exists(path), "superd removes its socket at shutdown")
        d.assert_clean()


if __name__ == "__main__":
    main([test_symlinked_parent_is_refused_and_roots_socket_kept, test_parents_others_can_write_or_own_are_refused,
          test_a_socket_superd_did_not_create_is_not_unlinked, test_reload_that_reopens_a_path_keeps_the_new_socket])
