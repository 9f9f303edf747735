"""superd import-xinetd: a main file with defaults and an includedir (whose "a.b" and "c~" entries
xinetd skips), a disabled service and an unsupported attribute. The converted files check and
serve; warnings name file, line and attribute; an unreadable file exits 2."""
import os
import re
import socket
from harness import Superd, check, main, processes_mentioning, talk_tcp, xinetd_stream

LO, HI = 81000, 81099
PORT = 31000


def service_text(name, port, extra=""):
    return xinetd_stream(name, port, "        server          = @PROBE@\n        server_args     = id\n" + extra)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in the test's own file")


def test_import_a_tree_then_check_and_serve_it():
    with Superd("ximport", {}, (LO, HI), global_extra='include = ["imported/*.toml"]') as d:
        sub = os.path.join(d.root, "xinetd.d")
        os.makedirs(sub)
        main_file = os.path.join(d.root, "xinetd.conf")
        write(main_file, f"""# superd test: a main file as distributions ship it
defaults
{{
        instances       = 25
        only_from       = 127.0.0.0/8
        log_on_failure  = HOST
}}

includedir {sub}
""")
        alpha = service_text("alpha", PORT)
        beta = service_text("beta", PORT + 1, "        disable         = yes\n")
        gamma = service_text("gamma", PORT + 2, "        max_load        = 2.5\n")
        for name, text in (("alpha", alpha), ("beta", beta), ("gamma", gamma),
                           ("a.b", service_text("dotted", PORT + 3)), ("c~", service_text("backup", PORT + 4))):
            write(os.path.join(sub, name), text.replace("@PROBE@", d.probe))
        out_dir = os.path.join(d.root, "imported")
        r = d.run_cli("import-xinetd", main_file, "-o", out_dir)
        check(r.returncode == 0, f"import exit {r.returncode}: {r.stderr}")
        files = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
        check(files == ["alpha.toml", "beta.toml", "gamma.toml"],
              f"one file per service, none from a.b or c~: {files}\n{r.stderr}")
        with open(os.path.join(out_dir, "beta.toml")) as f:
            beta_toml = f.read()
        check(re.search(r"^disabled = true$", beta_toml, re.M), f"beta is disabled:\n{beta_toml}")
        with open(os.path.join(out_dir, "alpha.toml")) as f:
            alpha_toml = f.read()
        check("127.0.0.0/8" in alpha_toml, f"only_from from defaults reaches alpha:\n{alpha_toml}")
        check(not re.search(r"^disabled = true$", alpha_toml, re.M), f"alpha is enabled:\n{alpha_toml}")
        gamma_file = os.path.join(sub, "gamma")
        want = f"{gamma_file}:{line_of(gamma, 'max_load')}: max_load: warning:"
        check(want in r.stderr, f"stderr lacks {want!r}:\n{r.stderr}")
        # Without -o: every file on stdout, each after its "# ---- NAME.toml" line.
        r2 = d.run_cli("import-xinetd", main_file)
        check(r2.returncode == 0, f"import to stdout exit {r2.returncode}: {r2.stderr}")
        heads = re.findall(r"^# ---- (\S+)$", r2.stdout, re.M)
        check(sorted(heads) == files, f"stdout headers {heads}")
        # The converted tree checks and serves: alpha answers as nobody, beta is not bound.
        r3 = d.cli("check")
        check(r3.returncode == 0, f"superd check of the imported tree: {r3.returncode}\n{r3.stdout}{r3.stderr}")
        d.start()
        out = talk_tcp(PORT).decode()
        check(out.startswith("uid=65534,65534,65534 "), f"alpha runs the probe as nobody: {out!r}\n{d.log()[-2000:]}")
        check(talk_tcp(PORT + 2).decode().startswith("uid=65534"), "gamma serves despite its warning")
        for port, what in ((PORT + 1, "disabled beta"), (PORT + 3, "a.b"), (PORT + 4, "c~")):
            with socket.socket() as s:
                s.settimeout(5)
                check(s.connect_ex(("127.0.0.1", port)) != 0, f"{what} must not listen")
        d.wait_log("EXIT alpha ")
        d.wait_log("EXIT gamma ")
        check(d.stop() == 0, "exit 0")
        check(not processes_mentioning(d.root), f"probes survive: {processes_mentioning(d.root)}")
        d.assert_clean()


def test_a_missing_file_exits_2_and_is_named():
    with Superd("ximportmissing", {}, (LO, HI)) as d:
        missing = os.path.join(d.root, "no-such-xinetd.conf")
        r = d.run_cli("import-xinetd", missing, "-o", os.path.join(d.root, "out"))
        check(r.returncode == 2, f"exit {r.returncode}, expected 2: {r.stderr}")
        check(missing in r.stderr, f"stderr names the file: {r.stderr!r}")
        # A main file whose includedir is missing: named too (as an error or a warning).
        main_file = os.path.join(d.root, "xinetd.conf")
        write(main_file, f"includedir {d.root}/no-such-dir\n")
        r = d.run_cli("import-xinetd", main_file, "-o", os.path.join(d.root, "out2"))
        check(f"{d.root}/no-such-dir" in r.stderr, f"stderr names the missing includedir: {r.stderr!r}")


if __name__ == "__main__":
    main([test_import_a_tree_then_check_and_serve_it, test_a_missing_file_exits_2_and_is_named])
