"""PROXY protocol in (issue 15, item 1): behind a load balancer, superd reads the v1/v2 header in
its loop, only from the proxies proxy_allow trusts, and everything after it sees the real client:
allow/deny, the per-source limit, the START/REFUSE lines and the service's environment
(REMOTE_ADDR, TCPLOCALIP, PROXY_ADDR and the v2 TLVs). The header never reaches the service; the
client's first bytes do, intact. A LOCAL header (a health check) spawns nothing. A header that is
late, malformed or over its bounds is refused with its reason. The test plays the proxy itself
over loopback; test_fleet.py runs the real HAProxy."""
import os
import socket
import struct
import time
from harness import (Superd, check, fields, main, poll_until, read_all, service, uids_of_processes)

LO, HI = 101600, 101799
PORT = 17800
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def v2(src=None, dst=None, sport=0, dport=0, tlvs=b"", local=False):
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    body = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + struct.pack("!HH", sport, dport)
    body += tlvs
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def env_echo(listen, socket_extra, extra=""):
    return service(listen, "env-echo", socket_extra=socket_extra, extra=extra)


def talk(port, data, pieces=1, gap=0.0, timeout=10):
    """Sends `data` (in `pieces` with `gap` seconds between), half-closes, reads to EOF. A
    connection that superd closed (or reset: it closes refused ones with bytes unread) gives
    what arrived before, b"" if nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        step = max(1, -(-len(data) // pieces))
        try:
            for i in range(0, len(data), step):
                s.sendall(data[i:i + step])
                if gap:
                    time.sleep(gap)
            s.shutdown(socket.SHUT_WR)
            return read_all(s)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            if isinstance(e, socket.timeout):
                raise
            return b""


def split(out):
    """The env-echo probe's answer: (environment as a dict, the bytes it echoed)."""
    head, _, echoed = out.partition(b"\n\n")
    env = dict(l.split("=", 1) for l in head.decode(errors="replace").splitlines() if "=" in l)
    return env, echoed


def test_v1_and_v2_the_service_sees_the_client_and_its_bytes_only():
    allow = 'proxy_protocol = "any"\nproxy_allow = ["127.0.0.0/8"]'
    with Superd("proxy-env", {"web": env_echo(PORT, allow)}, (LO, HI)) as d:
        d.start()
        env, echoed = split(talk(PORT, v1("192.0.2.10", "198.51.100.1", 40001, 443) + b"GET / HTTP/1.0\r\n\r\n"))
        check(echoed == b"GET / HTTP/1.0\r\n\r\n", f"the client's bytes, without the header: {echoed!r}")
        check(env.get("REMOTE_ADDR") == "192.0.2.10" and env.get("REMOTE_PORT") == "40001" and
              env.get("TCPREMOTEIP") == "192.0.2.10" and env.get("TCPREMOTEPORT") == "40001",
              f"the real client: {env}")
        check(env.get("TCPLOCALIP") == "198.51.100.1" and env.get("TCPLOCALPORT") == "443", f"its destination: {env}")
        check(env.get("PROXY_ADDR") == "127.0.0.1" and env.get("PROXY_PORT", "0") != "0", f"the balancer: {env}")
        d.wait_log("START web ")
        check("peer=192.0.2.10:40001" in [l for l in d.log().splitlines() if "START web" in l][0],
              f"the START line names the client: {d.log()[-800:]}")

        ssl = bytes([0x01, 0, 0, 0, 0]) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"alice")
        tlvs = tlv(0x02, b"shop.example") + tlv(0x05, b"id-77") + tlv(0x20, ssl) + tlv(0x30, b"blue") + tlv(0x04, b"\x00" * 3)
        payload = bytes(range(256)) * 4  # binary bytes, right after the header in the same segment
        env, echoed = split(talk(PORT, v2("203.0.113.5", "198.51.100.2", 50123, 8443, tlvs) + payload))
        check(echoed == payload, f"the client's binary bytes intact: {len(echoed)} of {len(payload)}")
        check(env.get("REMOTE_ADDR") == "203.0.113.5" and env.get("REMOTE_PORT") == "50123" and
              env.get("TCPLOCALPORT") == "8443", f"v2 client and destination: {env}")
        check(env.get("PROXY_AUTHORITY") == "shop.example" and env.get("PROXY_UNIQUE_ID") == "id-77" and
              env.get("PROXY_SSL_VERSION") == "TLSv1.3" and env.get("PROXY_SSL_CN") == "alice" and
              env.get("PROXY_NETNS") == "blue", f"the TLVs: {env}")

        # Slowly, a few bytes at a time: the loop keeps only what it has seen, and waits.
        env, echoed = split(talk(PORT, v1("2001:db8::7", "2001:db8::1", 1, 2) + b"slow", pieces=12, gap=0.05))
        check(env.get("REMOTE_ADDR") == "2001:db8::7" and echoed == b"slow", f"a header in pieces: {env} {echoed!r}")
        # UNKNOWN: the connection's own addresses stand.
        env, _ = split(talk(PORT, b"PROXY UNKNOWN\r\n"))
        check(env.get("REMOTE_ADDR") == "127.0.0.1", f"UNKNOWN: the proxy's own address: {env}")
        d.stop_clean()


def test_only_trusted_proxies_and_bad_headers_are_refused_with_reasons():
    svcs = {"strict": env_echo(PORT + 1, 'proxy_protocol = "v2"\nproxy_allow = ["10.255.255.1/32"]'),
            "late": env_echo(PORT + 2, 'proxy_protocol = "v1"\nproxy_allow = ["127.0.0.1"]\nproxy_timeout = "300ms"'),
            "small": env_echo(PORT + 3, 'proxy_protocol = "v2"\nproxy_allow = ["127.0.0.1"]\nproxy_max_tlv = 64')}
    with Superd("proxy-refuse", svcs, (LO, HI)) as d:
        d.start()
        out = talk(PORT + 1, v2("192.0.2.1", "192.0.2.2", 1, 2))
        check(out == b"", f"an untrusted proxy gets nothing: {out!r}")
        d.wait_log("not a trusted proxy (proxy_allow)")
        # No header in time: the connection is closed, the REFUSE line says why.
        with socket.create_connection(("127.0.0.1", PORT + 2), timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(b"PROXY TCP4 1.2.3.4")
            check(read_all(s) == b"", "closed without an answer")
            took = time.monotonic() - t0
        check(0.25 <= took < 3, f"closed after proxy_timeout=300ms: {took:.2f}s")
        d.wait_log("no complete PROXY header within proxy_timeout=300ms")
        check(talk(PORT + 2, b"GET / HTTP/1.0\r\n\r\n") == b"", "no header at all")
        d.wait_log("no PROXY v1 header")
        check(talk(PORT + 2, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n") == b"", "a bad port")
        d.wait_log("port is not a number")
        check(talk(PORT + 2, b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n") == b"", "over 107 bytes")
        d.wait_log("longer than 107 bytes")
        # v2 over proxy_max_tlv is refused on its first 16 bytes, before the rest is sent.
        big = v2("192.0.2.1", "192.0.2.2", 1, 2, tlv(0x04, b"\x00" * 100))
        with socket.create_connection(("127.0.0.1", PORT + 3), timeout=10) as s:
            s.sendall(big[:16])
            check(read_all(s) == b"", "closed")
        d.wait_log("over proxy_max_tlv=64")
        check("START" not in d.log(), f"nothing was spawned: {d.log()[-1500:]}")
        d.stop_clean()


def test_admission_sees_the_real_client():
    sock = ('proxy_protocol = "v1"\nproxy_allow = ["127.0.0.1"]\ndeny = ["192.0.2.66"]\n'
            'max_connections_per_source = 1')
    with Superd("proxy-admit", {"hold": service(PORT + 4, "sleep", "30", socket_extra=sock)}, (LO, HI)) as d:
        d.start()
        check(talk(PORT + 4, v1("192.0.2.66", "192.0.2.1", 5, 6)) == b"", "a denied client")
        d.wait_log("REFUSE hold peer=192.0.2.66:5")
        first = socket.create_connection(("127.0.0.1", PORT + 4), timeout=10)
        first.sendall(v1("192.0.2.7", "192.0.2.1", 7, 8))
        d.wait_log("START hold ")
        # The same client through the same proxy: over its per-source limit of 1. Another client
        # through that proxy is admitted: the proxy's own address counts for nobody.
        check(talk(PORT + 4, v1("192.0.2.7", "192.0.2.1", 9, 8)) == b"", "the second from 192.0.2.7")
        d.wait_log("max_connections_per_source reached")
        second = socket.create_connection(("127.0.0.1", PORT + 4), timeout=10)
        second.sendall(v1("192.0.2.8", "192.0.2.1", 7, 8))
        d.wait_log("START hold ", count=2)
        check(len(uids_of_processes(LO, HI)) == 2, "two instances, one per real client")
        first.close()
        second.close()
        d.stop_clean()


def test_a_health_check_spawns_nothing_and_unix_listeners_work():
    path_dir = "@ROOT@/sock"
    svcs = {"checked": env_echo(PORT + 5, 'proxy_protocol = "v2"\nproxy_allow = ["127.0.0.1"]'),
            "local": env_echo(f"{path_dir}/web.sock", 'proxy_protocol = "any"\nproxy_allow = ["unix"]')}
    with Superd("proxy-local", svcs, (LO, HI)) as d:
        os.makedirs(os.path.join(d.root, "sock"))
        d.start()
        for _ in range(20):
            check(talk(PORT + 5, v2(local=True)) == b"", "a LOCAL header is answered by a close")
        out, _ = split(talk(PORT + 5, v2("192.0.2.9", "192.0.2.1", 3, 4)))
        check(out.get("REMOTE_ADDR") == "192.0.2.9", f"then a real connection: {out}")
        # START is logged when the zygote's answer is read, which may come after the reply.
        d.wait_log("EXIT checked ")
        check(d.log().count("START checked") == 1, f"20 health checks spawned nothing: {d.log()[-1500:]}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(os.path.join(d.root, "sock", "web.sock"))
            s.sendall(v1("192.0.2.44", "192.0.2.1", 1000, 80) + b"hi")
            s.shutdown(socket.SHUT_WR)
            env, echoed = split(read_all(s))
        check(env.get("REMOTE_ADDR") == "192.0.2.44" and env.get("PROXY_ADDR") == "unix" and echoed == b"hi",
              f"over a UNIX socket: {env} {echoed!r}")
        d.stop_clean()


def test_config_errors_name_file_line_and_key():
    cases = [('proxy_protocol = "v2"', "socket.proxy_protocol", "needs proxy_allow"),
             ('proxy_allow = ["10.0.0.0/8"]', "socket.proxy_allow", "needs proxy_protocol"),
             ('proxy_protocol = "v3"\nproxy_allow = ["10.0.0.0/8"]', "socket.proxy_protocol", '"v1", "v2" or "any"'),
             ('proxy_protocol = "v1"\nproxy_allow = ["uid:x"]', "socket.proxy_allow", "uid:N"),
             ('proxy_protocol = "v1"\nproxy_allow = ["unix"]\nproxy_timeout = "0s"', "socket.proxy_timeout", "longer than 0"),
             ('proxy_protocol = "v2"\nproxy_allow = ["unix"]\nproxy_max_tlv = 70000', "socket.proxy_max_tlv", "")]
    for i, (lines, key, words) in enumerate(cases):
        with Superd(f"proxy-bad{i}", {"bad": env_echo(PORT + 10 + i, lines)}, (LO, HI)) as d:
            r = d.cli("check")
            out = r.stdout + r.stderr
            check(r.returncode != 0 and "bad.toml:" in out and key in out and words in out,
                  f"{lines!r}: {r.returncode} {out}")
            line = out.split("bad.toml:", 1)[1].split(":", 1)[0]
            check(line.isdigit() and int(line) >= 2, f"a line number: {out}")


if __name__ == "__main__":
    main([test_v1_and_v2_the_service_sees_the_client_and_its_bytes_only,
          test_only_trusted_proxies_and_bad_headers_are_refused_with_reasons,
          test_admission_sees_the_real_client,
          test_a_health_check_spawns_nothing_and_unix_listeners_work,
          test_config_errors_name_file_line_and_key])
