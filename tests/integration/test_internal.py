"""Services superd serves itself: the internal echo, discard, daytime, chargen and time (RFC 862,
863, 867, 864, 868) over TCP and UDP, declared in TOML (service.internal) and in xinetd files
(type = INTERNAL); redirect (a TCP relay inside superd, whose EXIT line counts the bytes); and
banners (banner, banner_success before the service's output, banner_fail to a refused client)."""
import contextlib
import os
import re
import socket
import struct
import threading
import time
from harness import (Superd, check, internal_service, main, read_all, service, service_file, talk_tcp, talk_udp,
                     xinetd_stream)

LO, HI = 79000, 79099
PORT = 29000
RFC868_EPOCH = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def check_daytime(text, what):
    """One short line carrying today's date and the time now (local or UTC: RFC 867 leaves the
    format open; xinetd writes "Tuesday, December 01, 2026 08:06:00-UTC")."""
    check(text.endswith("\n") and text.count("\n") == 1 and 10 <= len(text) <= 100, f"{what}: one line: {text!r}")
    m = re.search(r"(\d\d):(\d\d):(\d\d)", text)
    check(m, f"{what}: no HH:MM:SS in {text!r}")
    got = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    now = time.time()
    ok = False
    for t in (time.localtime(now), time.gmtime(now)):
        want = t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec
        if min(abs(got - want), 86400 - abs(got - want)) <= 120:
            ok = ok or str(t.tm_year) in text
    check(ok, f"{what}: {text!r} is not now ({time.ctime(now)})")


def check_chargen_lines(data, what, min_lines):
    """RFC 864's pattern: lines of 72 printable ASCII characters, each starting one character
    further along the 95-character ring than the one before."""
    lines = data.split(b"\r\n")
    full = [ln for ln in lines[:-1]]  # the last piece may be cut
    check(len(full) >= min_lines, f"{what}: {len(full)} full lines: {data[:200]!r}")
    for k, ln in enumerate(full):
        check(len(ln) == 72 and all(32 <= c <= 126 for c in ln), f"{what}: line {k} is not 72 printable: {ln!r}")
        if k:
            prev = full[k - 1]
            check(ln[:71] == prev[1:], f"{what}: line {k} does not rotate line {k - 1}: {prev!r} {ln!r}")
            nxt = prev[-1] + 1 if prev[-1] < 126 else 32
            check(ln[71] == nxt, f"{what}: line {k} ends with {chr(ln[71])!r}, expected {chr(nxt)!r}")


def check_time(data, what):
    check(len(data) == 4, f"{what}: 4 bytes, got {data!r}")
    t = struct.unpack("!I", data)[0] - RFC868_EPOCH
    check(abs(t - time.time()) < 10, f"{what}: {t} is not now ({time.time():.0f})")


def exit_counts(log, svc):
    """(bytes_in, bytes_out) of every EXIT line of svc."""
    return [(int(a), int(b)) for a, b in re.findall(rf"EXIT {svc} .*?bytes_in=(\d+) bytes_out=(\d+)", log)]


def exercise(d, ports, udp):
    """Talks to echo, discard, daytime, chargen and time at ports[name]; UDP too where udp[name]."""
    payload = os.urandom(3000) + b"end\n"
    # echo: the bytes come back; the EXIT line counts them both ways.
    got = talk_tcp(ports["echo"], send=payload)
    check(got == payload, f"tcp echo returned {len(got)} of {len(payload)} bytes")
    # discard: takes everything, sends nothing, closes at our EOF.
    t0 = time.time()
    got = talk_tcp(ports["discard"], send=b"x" * 100000, timeout=10)
    check(got == b"" and time.time() - t0 < 5, f"tcp discard answered {got[:100]!r} after {time.time() - t0:.1f}s")
    # daytime and time answer at once and close.
    check_daytime(talk_tcp(ports["daytime"], shutdown=False, timeout=5).decode(errors="replace"), "tcp daytime")
    check_time(talk_tcp(ports["time"], shutdown=False, timeout=5), "tcp time")
    # chargen: an endless stream; read 20 lines' worth, then hang up.
    with socket.create_connection(("127.0.0.1", ports["chargen"]), timeout=5) as s:
        data = b""
        deadline = time.time() + 5
        while len(data) < 74 * 20 and time.time() < deadline:
            b = s.recv(65536)
            if not b:
                break
            data += b
    check_chargen_lines(data, "tcp chargen", 19)
    if udp.get("echo"):
        for size in (1, 512, 1400):
            dgram = os.urandom(size)
            got = talk_udp(ports["echo"], dgram)
            check(got == [dgram], f"udp echo of {size} bytes: {[len(g) for g in got]}")
    if udp.get("daytime"):
        got = talk_udp(ports["daytime"], b"?")
        check(len(got) == 1, f"udp daytime: {got}")
        check_daytime(got[0].decode(errors="replace"), "udp daytime")
    if udp.get("time"):
        got = talk_udp(ports["time"], b"")
        check(len(got) == 1, f"udp time: {got}")
        check_time(got[0], "udp time")
    if udp.get("chargen"):
        got = talk_udp(ports["chargen"], b"?")
        # RFC 864: "a datagram containing a random number (between 0 and 512) of characters".
        check(len(got) == 1 and len(got[0]) <= 512, f"udp chargen: one datagram of at most 512 bytes: {got}")
        check(all(c in (10, 13) or 32 <= c <= 126 for c in got[0]), f"udp chargen: printable: {got[0][:100]!r}")
    if udp.get("discard"):
        check(talk_udp(ports["discard"], b"drop me", timeout=1) == [], "udp discard answers nothing")
    # The TCP echo's EXIT line, once the connections are done.
    d.wait_log(f"EXIT {d.echo_name} ")
    counts = exit_counts(d.log(), d.echo_name)
    check((len(payload), len(payload)) in counts, f"echo EXIT line counts {counts}, sent {len(payload)}:\n{d.log()[-2000:]}")
    d.wait_log(f"EXIT {d.discard_name} ")
    counts = exit_counts(d.log(), d.discard_name)
    check((100000, 0) in counts, f"discard EXIT line counts {counts}, sent 100000:\n{d.log()[-2000:]}")
    d.wait_log(f"EXIT {d.chargen_name} ")  # it ends when the client hangs up
    check(d.proc.poll() is None, "superd still runs")


NAMES = ["echo", "discard", "daytime", "chargen", "time"]


def test_internal_services_from_toml():
    ports = {n: PORT + k for k, n in enumerate(NAMES)}
    with Superd("internal", {n: internal_service(n, listen=ports[n], datagram=ports[n]) for n in NAMES},
                (LO, HI)) as d:
        d.echo_name, d.discard_name, d.chargen_name = "echo", "discard", "chargen"
        d.start()
        exercise(d, ports, {n: True for n in NAMES})
        d.stop_clean()


def xinetd_internal(name, port, kind):
    sock, proto, wait = ("stream", "tcp", "no") if kind == "stream" else ("dgram", "udp", "yes")
    return f"""service {name}
{{
        id              = {name}-{kind}
        type            = INTERNAL UNLISTED
        port            = {port}
        bind            = 127.0.0.1
        socket_type     = {sock}
        protocol        = {proto}
        wait            = {wait}
        user            = root
}}
"""


def test_internal_services_from_xinetd():
    ports = {n: PORT + 10 + k for k, n in enumerate(NAMES)}
    udp = {"echo": True, "daytime": True, "time": True, "chargen": True, "discard": True}
    text = "defaults\n{\n        instances = 50\n}\n\n"
    text += "".join(xinetd_internal(n, ports[n], "stream") for n in NAMES)
    text += "".join(xinetd_internal(n, ports[n], "dgram") for n in NAMES if udp[n])
    with Superd("xinternal", {}, (LO, HI), xinetd=text) as d:
        d.echo_name, d.discard_name, d.chargen_name = "echo-stream", "discard-stream", "chargen-stream"
        d.start()
        exercise(d, ports, udp)
        d.stop_clean()


class Backend:
    """A small TCP server on 127.0.0.1:port, in a thread: reads until EOF, answers b"ECHO:" +
    the data, closes. Bounded: at most `limit` connections, each with a timeout, for at most 60 s."""

    def __init__(self, port, limit=10):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # a closing test must not wait for accept
        self.served = 0
        self.peers = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run, args=(limit,), daemon=True)
        self.thread.start()

    def run(self, limit):
        deadline = time.time() + 60
        while self.served < limit and not self.stopping and time.time() < deadline:
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(10)
                self.peers.append(peer)
                data = read_all(c)
                self.served += 1  # before the answer: the client may check as soon as it has it
                try:
                    c.sendall(b"ECHO:" + data)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def test_redirect_relays_and_counts_bytes():
    port, backend_port = PORT + 20, PORT + 21
    redir = service_file(f'listen = ["127.0.0.1:{port}"]', f'redirect = "127.0.0.1:{backend_port}"')
    with Superd("redirect", {"redir": redir}, (LO, HI)) as d, contextlib.closing(Backend(backend_port)) as b:
        d.start()
        sent = []
        for size in (10, 70000):
            data = os.urandom(size)
            got = talk_tcp(port, send=data)
            check(got == b"ECHO:" + data, f"relayed answer: {len(got)} bytes for {size} sent\n{d.log()[-2000:]}")
            sent.append(size)
        d.wait_log("EXIT redir ", 2)
        counts = exit_counts(d.log(), "redir")
        for size in sent:
            check((size, size + 5) in counts, f"EXIT redir bytes_in/bytes_out {counts}; expected ({size}, {size + 5})")
        check(b.served == 2, f"backend served {b.served}")
        check(re.search(r"EXIT redir serial=\d+ peer=127\.0\.0\.1:\d+ ", d.log()), d.log()[-2000:])
        d.stop_clean()


def test_redirect_from_xinetd():
    port, backend_port = PORT + 22, PORT + 23
    relay = xinetd_stream("relay", port, f"        redirect        = 127.0.0.1 {backend_port}\n")
    with Superd("xredirect", {}, (LO, HI), xinetd=relay) as d, contextlib.closing(Backend(backend_port)):
        d.start()
        got = talk_tcp(port, send=b"through xinetd's redirect")
        check(got == b"ECHO:through xinetd's redirect", f"relayed: {got!r}\n{d.log()[-2000:]}")
        d.wait_log("EXIT relay ")
        check((25, 30) in exit_counts(d.log(), "relay"), f"counts {exit_counts(d.log(), 'relay')}")
        d.stop_clean()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def test_banners():
    port = PORT + 30
    with Superd("banners", {}, (LO, HI)) as d:
        write(os.path.join(d.root, "banner.txt"), "Welcome to superd's test host\r\n")
        write(os.path.join(d.root, "ok.txt"), "You are admitted.\r\n")
        write(os.path.join(d.root, "no.txt"), "Go away.\r\n")
        banners = '''banner = "@ROOT@/banner.txt"
banner_success = "@ROOT@/ok.txt"
banner_fail = "@ROOT@/no.txt"
'''
        d.write_service("greet", service(port, "id", socket_extra=banners))
        d.write_service("shut", service(port + 1, "id", socket_extra='deny = ["127.0.0.1/32"]\n' + banners))
        # Outside every access_times interval: a window that ends before now or starts after it.
        lt = time.localtime()
        window = "00:00-00:01" if lt.tm_hour >= 2 else "22:00-23:00"
        d.write_service("closed", service(port + 2, "id", socket_extra=f'access_times = ["{window}"]\n' + banners))
        # A window around now (skipped at the very ends of the day) admits.
        now_min = lt.tm_hour * 60 + lt.tm_min
        open_window = None
        if 5 <= now_min <= 24 * 60 - 6:
            a, b = now_min - 5, now_min + 5
            open_window = f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
            d.write_service("open", service(port + 3, "id", socket_extra=f'access_times = ["{open_window}"]'))
        d.start()
        out = talk_tcp(port).decode(errors="replace")
        check(re.match(r"Welcome to superd's test host\r\nYou are admitted\.\r\nuid=\d+", out),
              f"banner, banner_success, then the service: {out!r}\n{d.log()[-2000:]}")
        check("Go away" not in out, "no banner_fail for an admitted client")
        out = talk_tcp(port + 1).decode(errors="replace")
        check(out == "Welcome to superd's test host\r\nGo away.\r\n",
              f"a denied client gets banner and banner_fail, then EOF: {out!r}\n{d.log()[-2000:]}")
        d.wait_log("REFUSE shut ")
        out = talk_tcp(port + 2).decode(errors="replace")
        check(out == "Welcome to superd's test host\r\nGo away.\r\n",
              f"outside access_times {window}: banner and banner_fail: {out!r}\n{d.log()[-2000:]}")
        d.wait_log("REFUSE closed ")
        check(not re.search(r"START (shut|closed) ", d.log()), "a refused connection spawns nothing")
        if open_window:
            out = talk_tcp(port + 3).decode(errors="replace")
            check(out.startswith("uid="), f"inside access_times {open_window}: served: {out!r}\n{d.log()[-2000:]}")
        d.stop_clean()


if __name__ == "__main__":
    main([test_internal_services_from_toml, test_internal_services_from_xinetd, test_redirect_relays_and_counts_bytes,
          test_redirect_from_xinetd, test_banners])
