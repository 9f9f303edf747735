"""UDP loop and amplification guards of the internal datagram services. A UDP source address is
whatever the sender writes: one datagram forged "from 127.0.0.1:P to 127.0.0.1:P" made the echo
service answer itself forever, one forged from echo's port to chargen's made the two ping-pong
forever, and a flood of 1-byte requests to chargen came back as ~256 bytes each, unthrottled.
Forged datagrams are sent for real, through a raw socket (IP_HDRINCL) on loopback; the loops are
measured by superd's CPU time (/proc/PID/stat) and the host's UDP counters (/proc/net/snmp)."""
import os
import socket
import struct
import time
from harness import Superd, check, internal_service, main, skip, talk_udp

LO, HI = 87000, 87049
PORT = 16000  # 16000-16049: this file's ports (test_listen_path has the rest of the range)
TICK = os.sysconf("SC_CLK_TCK")


def ip_checksum(data):
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def forge_udp(src, sport, dst, dport, payload):
    """One IPv4 UDP datagram with a source of our choosing (root: a raw socket writes the header)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x4242, 0, 64, socket.IPPROTO_UDP, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        skip("no raw socket (CAP_NET_RAW) to forge a source address")
    with s:
        s.sendto(hdr + udp, (dst, 0))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def udp_in_datagrams():
    """The host's UDP InDatagrams counter (all sockets: other tests add a few, a loop millions)."""
    with open("/proc/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(rows[1][rows[0].index("InDatagrams")])


def measure_quiet(d, what):
    """After a forged datagram: superd must be idle over the next second, not looping."""
    time.sleep(0.3)  # a loop, if any, is in full swing by now
    cpu0, udp0 = cpu_seconds(d.proc.pid), udp_in_datagrams()
    time.sleep(1.0)
    cpu, udp = cpu_seconds(d.proc.pid) - cpu0, udp_in_datagrams() - udp0
    check(cpu < 0.2, f"{what}: superd used {cpu:.2f}s of CPU in 1s after one forged datagram ({udp} UDP datagrams "
          f"received on the host meanwhile): a reply loop")
    check(udp < 20000, f"{what}: {udp} UDP datagrams received on the host in 1s after one forged datagram")


def test_forged_datagram_from_itself_gets_no_reply():
    port = PORT
    with Superd("udpself", {"echo": internal_service("echo", datagram=port)}, (LO, HI)) as d:
        d.start()
        check(talk_udp(port, b"hello") == [b"hello"], "a real client is echoed")
        forge_udp("127.0.0.1", port, "127.0.0.1", port, b"loop")
        measure_quiet(d, "echo answering itself")
        d.wait_log("loop guard")
        check(talk_udp(port, b"still") == [b"still"], "a real client is still echoed")
        d.stop_clean()


def test_forged_datagram_between_echo_and_chargen_stops():
    echo, chargen = PORT + 1, PORT + 2
    with Superd("udppair", {"echo": internal_service("echo", datagram=echo),
                            "chargen": internal_service("chargen", datagram=chargen)}, (LO, HI)) as d:
        d.start()
        forge_udp("127.0.0.1", echo, "127.0.0.1", chargen, b"x")
        measure_quiet(d, "echo <-> chargen")
        d.wait_log("REFUSE chargen")
        check("loop guard" in d.log(), f"the refusal names the loop guard:\n{d.log()[-2000:]}")
        check(len(talk_udp(chargen, b"?")) == 1, "chargen still answers a real client")
        d.stop_clean()


def flood(port, n, source="127.0.0.1", quiet=1.0, limit=8.0):
    """Sends n one-byte requests from one socket as fast as it can; counts the replies until
    `quiet` seconds pass without one (and at most `limit` seconds). Returns (replies, seconds the
    sending took)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # room for every reply, if they come
        s.bind((source, 0))
        t0 = time.time()
        for _ in range(n):
            s.sendto(b"x", ("127.0.0.1", port))
        sent_in = time.time() - t0
        s.settimeout(quiet)
        replies = 0
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                s.recv(65536)
                replies += 1
            except socket.timeout:
                break
        return replies, sent_in


def test_chargen_flood_gets_the_per_source_budget():
    port = PORT + 3
    with Superd("udpflood", {"chargen": internal_service("chargen", datagram=port)}, (LO, HI)) as d:
        d.start()
        replies, sent_in = flood(port, 1000)
        # The defaults: 20 per 2s per source, a burst of 20, then 10 a second.
        budget = 20 + int(10 * (sent_in + 0.5)) + 1
        check(replies <= budget, f"1000 requests from one source got {replies} replies in {sent_in:.2f}s; "
              f"the per-source budget is {budget}")
        check(replies >= 10, f"the first requests are answered: {replies}")
        d.wait_log("datagram_reply_rate_per_source=20 per 2000ms")
        got = talk_udp(port, b"?", source="127.0.0.2", timeout=3)  # another source address
        check(len(got) == 1 and len(got[0]) <= 512, f"a second source is answered: {got!r}")
        d.stop_clean()


def test_reply_limits_are_configurable():
    port = PORT + 4
    keys = """datagram_reply_rate = 7
datagram_reply_interval = "20s"
datagram_reply_rate_per_source = 5
datagram_reply_interval_per_source = "20s"
"""
    with Superd("udpkeys", {"echo": internal_service("echo", datagram=port, socket_extra=keys)}, (LO, HI)) as d:
        d.start()
        first, _ = flood(port, 100, source="127.0.0.1", quiet=0.5)
        check(first == 5, f"one source: 5 per 20s, got {first}")
        time.sleep(1.1)  # a new second of REFUSE lines (20 a second are logged), no refill yet
        second, _ = flood(port, 100, source="127.0.0.3", quiet=0.5)
        check(second == 2, f"a second source: what is left of 7 per 20s for all, got {second}")
        d.wait_log("datagram_reply_rate=7 per 20000ms (all sources)")
        d.stop_clean()


if __name__ == "__main__":
    main([test_forged_datagram_from_itself_gets_no_reply, test_forged_datagram_between_echo_and_chargen_stops,
          test_chargen_flood_gets_the_per_source_budget, test_reply_limits_are_configurable])
