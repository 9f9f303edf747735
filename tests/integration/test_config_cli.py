"""`superd check` and `superd serve` on bad configuration: every problem as FILE:LINE:COL,
naming the key, a non-zero exit, and a daemon that refuses to start (and leaves nothing)."""
import os
import re
from harness import Superd, check, main, service

LO, HI = 74000, 74099
PORT = 24000


def test_check_reports_every_problem_with_position_and_key():
    with Superd("badcfg", {
        "typo": f"""[socket]
listen = ["127.0.0.1:{PORT}"]
max_conections = 5
[service]
exec = ["@PROBE@"]
""",
        "types": f"""[socket]
listen = ["127.0.0.1:{PORT + 1}", "10.0.0.300:80"]
[service]
exec = ["/nonexistent/program"]
runtime_max = "forever"
""",
        "dup": f"""[socket]
listen = ["{PORT}"]
[service]
exec = ["@PROBE@"]
""",
        "syntax": """[socket
listen = 1
""",
    }, (LO, HI)) as d:
        r = d.cli("check")
        check(r.returncode == 2, f"exit {r.returncode}")
        err = r.stderr
        conf = os.path.join(d.root, "conf.d")
        expect = [
            rf"{conf}/typo.toml:3:1: socket.max_conections: unknown key",
            rf"{conf}/types.toml:2:30: socket.listen: bad IPv4 address \"10.0.0.300\"",
            rf"{conf}/types.toml:5:15: service.runtime_max: bad duration \"forever\"",
            rf"{conf}/syntax.toml:1:\d+: ",
        ]
        for e in expect:
            check(re.search(e, err), f"missing {e!r} in:\n{err}")
        # typo.toml was rejected, so dup's port does not overlap anything parsed; fix typo and re-check.
        d.write_service("typo", service(PORT))
        os.remove(os.path.join(conf, "types.toml"))
        os.remove(os.path.join(conf, "syntax.toml"))
        r = d.cli("check")
        check(r.returncode == 2, f"exit {r.returncode}: {r.stderr}")
        check(re.search(rf"{conf}/(dup|typo).toml:2:11: socket.listen: \".*{PORT}\" overlaps \".*{PORT}\" of service",
                        r.stderr), r.stderr)
        # serve refuses to start on the same config and binds nothing.
        r = d.cli("serve")
        check(r.returncode == 2 and "overlaps" in r.stderr, f"serve: {r.returncode} {r.stderr}")
        os.remove(os.path.join(conf, "dup.toml"))
        r = d.cli("check")
        check(r.returncode == 0 and "OK, 1 service" in r.stdout, f"{r.returncode} {r.stdout} {r.stderr}")


def test_range_over_system_users_and_unknown_main_keys():
    with Superd("badrange", {}, (1, 1000), global_extra='colour = "blue"') as d:
        r = d.cli("check")
        check(r.returncode == 2, f"exit {r.returncode}")
        check(re.search(rf"{d.config}:2:21: superd.dynamic_uid_range: \[1, 1000\] overlaps the system database: "
                        r"(user|group) \w+", r.stderr), r.stderr)
        check(f"{d.config}:7:1: superd.colour: unknown key" in r.stderr, r.stderr)


def test_a_missing_config_file_and_a_non_executable_program():
    with Superd("noexec", {"p": service(PORT + 2, program="@ROOT@/superd.toml")}, (LO, HI)) as d:
        r = d.cli("check")
        check(r.returncode == 2 and "service.exec[0]" in r.stderr and "not an executable file" in r.stderr, r.stderr)
        r = d.run_cli("check", "-c", d.config + ".missing")
        check(r.returncode == 2 and "cannot read" in r.stderr, r.stderr)


if __name__ == "__main__":
    main([test_check_reports_every_problem_with_position_and_key, test_range_over_system_users_and_unknown_main_keys,
          test_a_missing_config_file_and_a_non_executable_program])
