"""`meson install --destdir`: the installed file list (binary in sbindir, NSS module in the
multiarch libdir, reference config and an empty conf.d, systemd units, man pages, bash
completion; no example services by default), units that `systemd-analyze verify` accepts, man
pages that `man -l` renders and `groff -ww` warns nothing about, and a config that checks; with
-Dbench=true also superd-loadgen and its man page, and the installed loadgen runs."""
import json
import os
import shutil
import subprocess
from harness import SCRATCH_BASE, check, main

BUILD = os.environ.get("BUILD_ROOT", "")


def run(*cmd, env=None):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, env=env)


def test_meson_install_puts_everything_in_place():
    check(BUILD and os.path.isdir(BUILD), f"BUILD_ROOT {BUILD!r}")
    dest = os.path.join(SCRATCH_BASE, f"install-{os.getpid()}")
    shutil.rmtree(dest, ignore_errors=True)
    try:
        r = run("meson", "install", "-C", BUILD, "--destdir", dest, "--no-rebuild", "--quiet")
        check(r.returncode == 0, f"meson install: {r.stdout} {r.stderr}")
        opts = {o["name"]: o["value"] for o in json.loads(run("meson", "introspect", "--buildoptions", BUILD).stdout)}
        prefix = opts["prefix"]
        at = lambda *p: os.path.join(prefix, *p)
        etc = opts["sysconfdir"] if opts["sysconfdir"].startswith("/") else at(opts["sysconfdir"])
        want = {at(opts["sbindir"], "superd"), at(opts["libdir"], "libnss_superd.so.2"),
                os.path.join(etc, "superd", "superd.toml"), os.path.join(etc, "superd", "conf.d") + "/",
                at("lib", "systemd", "system", "superd.service"), at("lib", "systemd", "system", "superd.socket"),
                at("lib", "systemd", "system", "superd-capsule@.service"),
                at(opts["mandir"], "man8", "superd.8"), at(opts["mandir"], "man8", "superd-import-xinetd.8"),
                at(opts["mandir"], "man5", "superd.toml.5"),
                at(opts["datadir"], "bash-completion", "completions", "superd"),
                at(opts["datadir"], "doc", "superd", "examples", "hello.toml.example")}
        pages = ["man8/superd.8", "man8/superd-import-xinetd.8", "man5/superd.toml.5"]
        if opts["bench"]:  # the load generator, installed with -Dbench=true (the default)
            want |= {at(opts["bindir"], "superd-loadgen"), at(opts["mandir"], "man1", "superd-loadgen.1")}
            pages.append("man1/superd-loadgen.1")
        got = set()
        for root, dirs, files in os.walk(dest):
            for f in files:
                got.add(os.path.join(root, f)[len(dest):])
            if not dirs and not files:
                got.add(root[len(dest):] + "/")
        print("installed:\n  " + "\n  ".join(sorted(got)))
        check(got == want, f"the installed files: extra {sorted(got - want)}, missing {sorted(want - got)}")
        check("-linux-" in opts["libdir"], f"the multiarch libdir: {opts['libdir']}")
        # The units, with superd's path where the destdir put it.
        verify = os.path.join(dest, "verify")
        os.makedirs(verify)
        superd = at(opts["sbindir"], "superd")
        for unit in ("superd.service", "superd.socket", "superd-capsule@.service"):
            with open(dest + at("lib", "systemd", "system", unit)) as f:
                text = f.read()
            check(superd in text or unit == "superd.socket", f"{unit} runs {superd}")
            name = unit.replace("@.", "@test.")
            with open(os.path.join(verify, name), "w") as f:
                f.write(text.replace(superd, dest + superd))
        env = dict(os.environ, MANPATH=dest + at(opts["mandir"]))
        r = run("systemd-analyze", "verify", *[os.path.join(verify, u) for u in
                                                ("superd.service", "superd.socket", "superd-capsule@test.service")], env=env)
        check(r.returncode == 0 and not r.stderr.strip(), f"systemd-analyze verify: {r.returncode} {r.stderr}")
        for page in pages:
            path = dest + at(opts["mandir"], page)
            r = run("man", "-l", path, env=dict(os.environ, MANWIDTH="80"))
            check(r.returncode == 0 and "NAME" in r.stdout and "SEE ALSO" in r.stdout, f"man -l {page}: {r.stderr}")
            r = run("groff", "-ww", "-man", "-z", path)
            check(r.returncode == 0 and r.stderr == "", f"groff -ww {page}: {r.stderr}")
        r = run("man", "-l", dest + at(opts["mandir"], "man5", "superd.toml.5"), env=dict(os.environ, MANWIDTH="200"))
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "conf", "superd.toml")) as f:
            for line in f.read().splitlines():
                if line.startswith("dynamic_uid_range") or line.startswith("capsule_uid_range"):
                    check(line in r.stdout, f"superd.toml(5) has the reference's {line!r}")
        r = run(dest + superd, "check", "-c", dest + os.path.join(etc, "superd", "superd.toml"))
        check(r.returncode == 0 and "OK, 0 services" in r.stdout, f"the installed config checks: {r.stdout} {r.stderr}")
        if opts["bench"]:
            r = run(dest + at(opts["bindir"], "superd-loadgen"), "--help")
            check(r.returncode == 2 and "usage: superd-loadgen --target" in r.stderr, f"superd-loadgen --help: {r.returncode} {r.stderr}")
        r = run("bash", "-c", f"source {dest + at(opts['datadir'], 'bash-completion', 'completions', 'superd')}; "
                "COMP_WORDS=(superd ca); COMP_CWORD=1; _superd; echo ${COMPREPLY[@]}")
        check(r.stdout.split() == ["capsule"], f"bash completion: {r.stdout!r} {r.stderr!r}")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main([test_meson_install_puts_everything_in_place])
