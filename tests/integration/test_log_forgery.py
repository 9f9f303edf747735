"""A service cannot forge superd's log through its stderr: the probe's "forge" mode writes
"ok\\rSTART forged serial=1 uid=0\\x1b[2K" and superd must log it as one line with the CR and ESC
escaped ("\\r", "\\x1b"), for the default stderr sink and for log_target = "file:PATH". The log is
read as bytes and split at CR as well as LF, as a terminal would show it: no piece may start with
the forged START. Also: `superd check` refuses a runtime_max that would overflow the timers."""
import os
import re
from harness import Superd, check, main, read_bytes, service, talk_tcp, wait_bytes

LO, HI = 85000, 85099
PORT = 14000

FORGED_ESCAPED = rb"ok\rSTART forged serial=1 uid=0\x1b[2K"


def check_not_forged(data, what):
    check(b"\r" not in data, f"{what}: a raw CR reached the log: {data[-2000:]!r}")
    check(b"\x1b" not in data, f"{what}: a raw ESC reached the log: {data[-2000:]!r}")
    pieces = re.split(rb"[\r\n]", data)
    forged = [p for p in pieces if p.startswith(b"START forged")]
    check(not forged, f"{what}: a line starts with the forged START: {forged!r}")
    lines = [line for line in data.split(b"\n") if FORGED_ESCAPED in line]
    check(len(lines) == 1, f"{what}: the stderr line is logged once, escaped: {data[-2000:]!r}")
    check(re.search(rb"forge\[\d+\] uid=\d+: " + re.escape(FORGED_ESCAPED) + rb"$", lines[0]),
          f"{what}: the relayed line keeps its prefix and ends with the escaped text: {lines[0]!r}")


def test_forged_stderr_line_default_sink():
    with Superd("forge", {"forge": service(PORT, "forge")}, (LO, HI)) as d:
        d.start()
        check(talk_tcp(PORT) == b"ok\n", "the forge probe answers")
        d.wait_log("EXIT forge ")
        data = wait_bytes(d.log_path, FORGED_ESCAPED)
        check_not_forged(data, "stderr sink")
        d.stop_clean()


def test_forged_stderr_line_file_sink():
    with Superd("forgefile", {"forge": service(PORT + 1, "forge", extra='log_target = "file:@ROOT@/log/forge.log"')},
                (LO, HI)) as d:
        os.makedirs(os.path.join(d.root, "log"), exist_ok=True)
        d.start()
        check(talk_tcp(PORT + 1) == b"ok\n", "the forge probe answers")
        path = os.path.join(d.root, "log", "forge.log")
        wait_bytes(path, b"EXIT forge ")
        data = wait_bytes(path, FORGED_ESCAPED)
        check_not_forged(data, "file sink")
        check(b"START forge serial=1" in data, f"the real START is in the file: {data!r}")
        check(b"forged" not in read_bytes(d.log_path), "the service's lines went to the file only")
        d.stop_clean()


def test_check_refuses_a_duration_that_overflows():
    with Superd("longdur", {
        "overflow": service(PORT + 2, "id", extra='runtime_max = "106751991167d"'),
        "atbound": service(PORT + 3, "id", extra='runtime_max = "36500d"\ntimeout_stop = 3153600000'),
    }, (LO, HI)) as d:
        r = d.cli("check")
        check(r.returncode == 2, f"superd check fails: exit {r.returncode}\n{r.stderr}")
        conf = os.path.join(d.root, "conf.d")
        check(re.search(re.escape(conf) + r'/overflow\.toml:5:15: service\.runtime_max: duration "106751991167d" '
                        r'is too long \(at most 36500d\)', r.stderr), r.stderr)
        check("atbound" not in r.stderr, f"the bound itself is accepted: {r.stderr}")
        d.write_service("overflow", service(PORT + 2, "id"))
        r = d.cli("check")
        check(r.returncode == 0, f"fixed: exit {r.returncode}\n{r.stderr}")


if __name__ == "__main__":
    main([test_forged_stderr_line_default_sink, test_forged_stderr_line_file_sink,
          test_check_refuses_a_duration_that_overflows])
