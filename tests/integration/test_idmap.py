#!/usr/bin/env python3
"""state_directory_idmap (issue 16): each instance sees its state, cache and logs directories,
bind-mounted through an idmapped mount, as owned by its own fresh UID; on disk the files belong
to the service's stable owner; other owners show as nobody; ownership-checking tools (git
without safe.directory, ssh-keygen, sshd -t with StrictModes) accept the files; unsupported
filesystems and foreign owners are refused; symlinks and hard links do not escape; a reload
that toggles the key under live instances is refused."""

import json
import os
import shutil
import subprocess
import threading
import time

from harness import Superd, check, fields, main, poll_until, service, skip, talk_tcp

LO, HI = 102200, 102399
PORT = 18000


def sh(port, script, extra=""):
    return service(port, "-c", script, program="/bin/sh", extra=extra)


IDMAP = 'state_directory = "vault"\ncache_directory = "vault"\nlogs_directory = "vault"\nstate_directory_idmap = true'

SEE = ("echo uid=$(id -u); echo dir=$(stat -c %u:%g $STATE_DIRECTORY/.); echo cache=$(stat -c %u $CACHE_DIRECTORY/.); "
       "echo logs=$(stat -c %u $LOGS_DIRECTORY/.); "
       "echo $(id -u) >> $STATE_DIRECTORY/shared && echo wrote=ok; echo file=$(stat -c %u:%g $STATE_DIRECTORY/shared); "
       "echo foreign=$(stat -c %u $STATE_DIRECTORY/rootfile 2>/dev/null); "
       "echo lines=$(wc -l < $STATE_DIRECTORY/shared)")


def host_dir(d, name="vault", root="lib"):
    return os.path.join(d.root, root, "private", name)


def test_each_instance_owns_the_directory():
    with Superd("idm-own", {"v": sh(PORT, SEE + "; sleep ${NAP:-0}", extra=IDMAP)}, (LO, HI)) as d:
        d.start()
        owner = os.stat(host_dir(d)).st_uid
        check(LO <= owner <= HI, f"the stable owner {owner} is not a dynamic UID")
        with open(os.path.join(host_dir(d), "rootfile"), "w") as f:
            f.write("root's\n")
        seen = []
        for _ in range(3):
            out = fields(talk_tcp(PORT).decode())
            uid = out["uid"]
            check(out["dir"] == f"{uid}:{uid}", f"the directory is not the instance's own: {out}")
            check(out["cache"] == uid and out["logs"] == uid, f"cache/logs not the instance's own: {out}")
            check(out.get("wrote") == "ok" and out["file"] == f"{uid}:{uid}", f"the shared file: {out}")
            check(out["foreign"] == "65534", f"a root-owned file is not nobody inside: {out}")
            seen.append(uid)
            check(out["lines"] == str(len(seen)), f"a file one instance wrote is not the next's: {out}")
        check(len(set(seen)) == 3 and str(owner) not in seen, f"instances did not get fresh UIDs: {seen} owner {owner}")
        st = os.stat(os.path.join(host_dir(d), "shared"))
        check((st.st_uid, st.st_gid) == (owner, owner), f"on disk the file is not the owner's: {st}")
        # Concurrent instances, each with its own UID, all see it as theirs.
        outs, errs = [], []

        def one():
            try:
                outs.append(fields(talk_tcp(PORT).decode()))
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        ts = [threading.Thread(target=one) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        check(not errs and len(outs) == 4, f"concurrent instances failed: {errs}")
        for out in outs:
            check(out["dir"] == f"{out['uid']}:{out['uid']}" and out.get("wrote") == "ok", f"concurrent: {out}")
        d.stop_clean()
    # A restart keeps the owner: hashed from the name, preferring the existing owner.
    with Superd("idm-own", {"v": sh(PORT, SEE, extra=IDMAP)}, (LO, HI)) as d2:
        d2.start()
        check(os.stat(host_dir(d2)).st_uid == owner, "a restart changed the owner")
        d2.stop_clean()


def test_git_without_safe_directory():
    script = ("export HOME=/tmp; cd $STATE_DIRECTORY; "
              "if [ ! -d repo ]; then git init -q repo && cd repo && git -c user.email=a@b -c user.name=a commit -q "
              "--allow-empty -m first && echo init=ok; else cd repo && git status --porcelain >/dev/null 2>/tmp/e "
              "&& echo status=ok || echo status=$(head -c 80 /tmp/e | tr ' \n' __); fi")
    with Superd("idm-git", {"g": sh(PORT + 1, script, extra='state_directory = "repo"\nstate_directory_idmap = true')},
                (LO, HI)) as d:
        d.start()
        check(fields(talk_tcp(PORT + 1).decode()).get("init") == "ok", "git init failed")
        out = talk_tcp(PORT + 1).decode()
        check(fields(out).get("status") == "ok", f"git status refused the repository: {out!r}")
        d.stop_clean()
    # The control: the shared-group layout without the key, where git refuses ("dubious ownership").
    with Superd("idm-git0", {"g": sh(PORT + 1, script, extra='state_directory = "repo"')}, (LO, HI)) as d:
        d.start()
        talk_tcp(PORT + 1)
        out = fields(talk_tcp(PORT + 1).decode())
        check(out.get("status", "ok") != "ok" and "dubious" in out.get("status", ""),
              f"without the key git should refuse another UID's repository: {out}")
        d.stop_clean()


def test_ssh_tools_with_strict_modes():
    if not shutil.which("ssh-keygen"):
        skip("ssh-keygen is not installed (openssh-client)")
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    script = ("S=$STATE_DIRECTORY; if [ ! -f $S/key ]; then ssh-keygen -q -t ed25519 -N '' -f $S/key && "
              "cp $S/key.pub $S/authorized_keys && chmod 600 $S/authorized_keys && echo keygen=ok; else "
              "ssh-keygen -y -f $S/key > /tmp/pub 2>/tmp/e && echo readkey=ok || echo readkey=$(head -c 80 /tmp/e | tr ' ' _); "
              "printf 'StrictModes yes\\nHostKey %s/key\\nAuthorizedKeysFile %s/authorized_keys\\nPidFile none\\n"
              "UsePAM no\\n' $S $S > /tmp/cfg; "
              f"if [ -x '{sshd or ''}' ]; then '{sshd or ''}' -t -f /tmp/cfg 2>/tmp/e2 && echo sshd=ok || "
              "echo sshd=$(head -c 120 /tmp/e2 | tr ' ' _); fi; fi")
    # ssh-keygen and sshd want a passwd entry for their UID: what libnss_superd gives a host that
    # lists it in nsswitch.conf; here the host's passwd with the range added, bound read-only.
    extra = ('state_directory = "keys"\nstate_directory_idmap = true\n'
             'bind_read_only_paths = ["@ROOT@/passwd:/etc/passwd"]')
    with Superd("idm-ssh", {"s": sh(PORT + 2, script, extra=extra)}, (LO, HI)) as d:
        with open("/etc/passwd") as f, open(os.path.join(d.root, "passwd"), "w") as out:
            out.write(f.read())
            for uid in range(LO, HI + 1):
                out.write(f"superd-{uid}:x:{uid}:{uid}::/:/usr/sbin/nologin\n")
        os.chmod(os.path.join(d.root, "passwd"), 0o644)
        d.start()
        first = talk_tcp(PORT + 2).decode()
        check(fields(first).get("keygen") == "ok", f"ssh-keygen failed: {first!r}")
        out = fields(talk_tcp(PORT + 2).decode())
        check(out.get("readkey") == "ok", f"ssh-keygen -y refused the key another instance wrote: {out}")
        if sshd:
            check(out.get("sshd") == "ok", f"sshd -t with StrictModes refused: {out}")
        d.stop_clean()
    if not sshd:
        print("note: sshd is not installed (openssh-server): ssh-keygen checked, sshd -t not")


def test_unsupported_filesystem_is_refused():
    with Superd("idm-ramfs", {"r": sh(PORT + 3, "id -u", extra='state_directory = "r"\nstate_directory_idmap = true')},
                (LO, HI)) as d:
        lib = os.path.join(d.root, "lib")
        os.makedirs(lib, exist_ok=True)
        subprocess.run(["mount", "-t", "ramfs", "idmap-test", lib], check=True)
        try:
            d.start(expect_ready=False)
            d.wait_log("does not support idmapped mounts")
            log = d.log()
            check("ramfs" in log and "state_directory_idmap" in log, f"the error does not name the filesystem:\n{log}")
            d.wait_exit(20)
        finally:
            if d.proc and d.proc.poll() is None:
                d.kill()
            subprocess.run(["umount", lib], check=False)


def test_foreign_owners_are_refused():
    for owner, label in ((0, "root"), (4242, "outside")):
        with Superd(f"idm-foreign-{label}", {"f": sh(PORT + 4, "id -u", extra=IDMAP)}, (LO, HI)) as d:
            vault = host_dir(d)
            os.makedirs(vault)
            os.chmod(os.path.join(d.root, "lib", "private"), 0o700)
            os.chown(vault, owner, owner)
            d.start(expect_ready=False)
            d.wait_log(f"is owned by UID {owner}, outside the dynamic range")
            d.wait_exit(20)
            check(os.stat(vault).st_uid == owner, "a refused directory was chowned anyway")


def test_symlinks_and_hard_links_do_not_escape():
    script = ("S=$STATE_DIRECTORY; echo link=$(readlink $S/out); "
              "echo through=$(stat -L -c %u $S/out); (echo x >> $S/out) 2>/dev/null && echo wrote=yes || echo wrote=no; "
              "ln -s /etc/passwd $S/mine && echo made=ok; "
              "echo hello > /tmp/t; ln /tmp/t $S/hard 2>/tmp/e; echo hard=$(grep -o 'Invalid cross-device link' /tmp/e "
              "| tr ' ' _); ln $S/secret2 /tmp/h 2>/tmp/e; echo hard2=$(grep -o 'Invalid cross-device link' /tmp/e "
              "| tr ' ' _)")
    with Superd("idm-links", {"l": sh(PORT + 5, script, extra=IDMAP)}, (LO, HI)) as d:
        outside = os.path.join(d.root, "outside")
        with open(outside, "w") as f:
            f.write("owner's, but outside the mount\n")
        d.start()
        owner = os.stat(host_dir(d)).st_uid
        # Outside the idmapped mount, even a file of the owner keeps its real owner: no mapping.
        os.chown(outside, owner, owner)
        os.chmod(outside, 0o600)
        os.chmod(d.root, 0o755)
        os.symlink(outside, os.path.join(host_dir(d), "out"))
        os.lchown(os.path.join(host_dir(d), "out"), owner, owner)
        with open(os.path.join(host_dir(d), "secret2"), "w") as f:
            f.write("s\n")
        os.chown(os.path.join(host_dir(d), "secret2"), owner, owner)
        out = fields(talk_tcp(PORT + 5).decode())
        check(out.get("link") == outside, f"the symlink is not a symlink inside: {out}")
        check(out.get("through") == str(owner), f"the mapping followed the symlink out of the mount: {out}")
        check(out.get("wrote") == "no", f"the instance wrote through the symlink to a file outside: {out}")
        check(out.get("made") == "ok", f"the instance could not make a symlink: {out}")
        mine = os.path.join(host_dir(d), "mine")
        check(os.path.islink(mine) and os.lstat(mine).st_uid == owner, "a symlink made inside is not the owner's")
        check(out.get("hard") == "Invalid_cross-device_link", f"a hard link into the mount: {out}")
        check(out.get("hard2") == "Invalid_cross-device_link", f"a hard link out of the mount: {out}")
        d.stop_clean()


def test_reload_toggling_the_key_with_live_instances():
    base = 'state_directory = "t"\n'
    script = "echo uid=$(id -u) dir=$(stat -c %u:%g $STATE_DIRECTORY/.); read line"
    with Superd("idm-reload", {"t": sh(PORT + 6, script, extra=base)}, (LO, HI)) as d:
        d.start()
        import socket
        held = socket.create_connection(("127.0.0.1", PORT + 6), timeout=10)
        first = fields(held.recv(200).decode())
        check(first["dir"].startswith("0:"), f"without the key the directory is root:group: {first}")
        d.write_service("t", sh(PORT + 6, script, extra=base + "state_directory_idmap = true"))
        d.cli("reload")
        d.wait_log("state_directory_idmap turns on while 1 instance(s) run")
        still = fields(talk_tcp(PORT + 6, b"\n").decode())
        check(still["dir"].startswith("0:"), f"a refused reload changed the layout: {still}")
        held.sendall(b"\n")
        held.close()
        poll_until(lambda: "EXIT t" in d.log() and d.log().count("EXIT t") >= 2, 10)
        time.sleep(0.5)
        d.cli("reload")
        poll_until(lambda: fields(talk_tcp(PORT + 6, b"\n").decode()).get("dir", "").startswith("1"), 10)
        now = fields(talk_tcp(PORT + 6, b"\n").decode())
        check(now["dir"] == f"{now['uid']}:{now['uid']}", f"after the reload the instance does not own it: {now}")
        held = socket.create_connection(("127.0.0.1", PORT + 6), timeout=10)
        held.recv(200)
        d.write_service("t", sh(PORT + 6, script, extra=base))
        d.cli("reload")
        d.wait_log("state_directory_idmap turns off while 1 instance(s) run")
        held.sendall(b"\n")
        held.close()
        d.stop_clean()


def test_namespaces_are_built_ahead_of_the_connections():
    """The pool hands out fresh UIDs (200 here), none recycled yet: without work ahead, every
    connection would build its user namespace on its own path. The daemon builds them for the
    UIDs the pool hands out next while its loop is idle, so none of these 30 connections waits for
    one, and each still sees the directory as its own."""
    with Superd("idm-ahead", {"v": sh(PORT + 7, SEE, extra=IDMAP)}, (LO, HI)) as d:
        d.start()

        def idmap():
            return json.loads(d.cli("status", "--json").stdout)["idmap"]
        check(poll_until(lambda: idmap()["built_ahead"] >= 96, 15), f"the lookahead was not built: {idmap()}")
        seen = set()
        for _ in range(30):
            out = fields(talk_tcp(PORT + 7).decode())
            check(out["dir"] == f"{out['uid']}:{out['uid']}" and out.get("wrote") == "ok", f"not its own: {out}")
            seen.add(out["uid"])
        check(len(seen) == 30, f"30 connections, {len(seen)} UIDs")
        st = idmap()
        check(st["built_on_connection"] == 0, f"a connection built its namespace on its path: {st}")
        check(st["built_ahead"] >= 96 + 30 - 2, f"the lookahead did not follow the pool: {st}")
        # The helpers behind the namespaces are reaped, not left as zombies.
        def zombies():
            n = 0
            for pid in d.zygotes():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        n += f.read().rsplit(")", 1)[1].split()[0] == "Z"
                except FileNotFoundError:
                    pass
            return n
        check(poll_until(lambda: zombies() <= 1, 5), f"{zombies()} helpers left as zombies")
        d.stop_clean()


if __name__ == "__main__":
    main([test_each_instance_owns_the_directory, test_git_without_safe_directory, test_ssh_tools_with_strict_modes,
          test_unsupported_filesystem_is_refused, test_foreign_owners_are_refused,
          test_symlinks_and_hard_links_do_not_escape, test_reload_toggling_the_key_with_live_instances,
          test_namespaces_are_built_ahead_of_the_connections])
