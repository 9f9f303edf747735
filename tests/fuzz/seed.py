#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/TARGET/ (committed; rerun after adding fixtures).

config: the shipped and example TOML files, the README's ```toml blocks (split at "# ---- NAME"
lines), and the TOML texts of the unit tests (C++ raw strings) and integration tests (Python
triple-quoted strings with a [socket], [service] or [superd] table).
xinetd: the files under tests/unit/xinetd/, the README's xinetd and inetd.conf examples (fenced
blocks with a `service NAME` or `defaults` line) and the raw strings of test_xinetd.cpp.
control, datagram, syslog, proxy: handmade seeds in the targets' input formats (see each fuzz_*.cpp).
Files are named by the SHA-1 of their content, as libFuzzer names its own; crash-* regression
inputs found by fuzzing are kept as they are.
"""
import glob
import hashlib
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("crash-"):
            os.remove(os.path.join(d, f))
    unique = {hashlib.sha1(s).hexdigest(): s for s in seeds if s}
    for name, s in unique.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(s)
    print(f"{target}: {len(unique)} seeds")


def fenced(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, re.S | re.M)


def cpp_raw_strings(path):
    return [m.encode() for m in re.findall(r'R"\((.*?)\)"', read(path).decode(), re.S)]


def config_seeds():
    seeds = [read("conf/superd.toml"), read("examples/superd.toml")]
    for pattern in ["conf/conf.d/*.example", "examples/conf.d/*.toml"]:
        seeds += [read(os.path.relpath(p, ROOT)) for p in sorted(glob.glob(os.path.join(ROOT, pattern)))]
    readme = read("README.md").decode()
    for block in fenced(readme, "toml"):
        seeds += [part.encode() for part in re.split(r"^# ---- .*$", block, flags=re.M)]
    for p in sorted(glob.glob(os.path.join(ROOT, "tests", "unit", "test_*.cpp"))):
        seeds += [s for s in cpp_raw_strings(os.path.relpath(p, ROOT)) if re.search(rb"^\[(socket|service|superd)", s, re.M)]
        # Plain "..." literals passed to the parsers: "[socket]\\nlisten=...".
        for lit in re.findall(r'parse_(?:service|global)\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)', read(os.path.relpath(p, ROOT)).decode()):
            parts = re.findall(r'"((?:[^"\\]|\\.)*)"', lit)
            seeds.append("".join(parts).encode().decode("unicode_escape").encode())
    for p in sorted(glob.glob(os.path.join(ROOT, "tests", "integration", "*.py"))):
        text = read(os.path.relpath(p, ROOT)).decode()
        # The harness's service(listen, ..., extra=..., socket_extra=...): the keys in a file.
        for key, lit in re.findall(r'\b(extra|socket_extra)\s*=\s*"((?:[^"\\]|\\.)*)"', text):
            body = lit.encode().decode("unicode_escape")
            sock, svc = (body, "") if key == "socket_extra" else ("", body)
            seeds.append(f'[socket]\nlisten = ["7000"]\n{sock}\n[service]\nexec = ["/bin/true"]\n{svc}\n'.encode())
        for s in re.findall(r'"""(.*?)"""', text, re.S):
            if re.search(r"^\[(socket|service|superd)", s, re.M) and "{" not in s.replace("{{", ""):
                seeds.append(s.replace("{{", "{").replace("}}", "}").encode())
    return seeds


def xinetd_seeds():
    seeds = []
    for p in sorted(glob.glob(os.path.join(ROOT, "tests", "unit", "xinetd", "**", "*"), recursive=True)):
        if os.path.isfile(p) and "/expected/" not in p:
            seeds.append(read(os.path.relpath(p, ROOT)))
    readme = read("README.md").decode()
    for block in fenced(readme, ""):
        if re.search(r"^(service \S+|defaults)\s*$", block, re.M) or re.search(r"^\S+\s+(stream|dgram)\s", block, re.M):
            seeds.append(block.encode())
    seeds += cpp_raw_strings("tests/unit/test_xinetd.cpp")
    seeds += [b"echo stream tcp nowait root internal\ndaytime dgram udp wait root internal\n",
              b"ftp stream tcp nowait root /usr/sbin/tcpd in.ftpd -l -a\n"]
    return seeds


def control_seeds():
    # First byte: the number of fds passed (run needs 3).
    msgs = [(0, '{"op":"status"}'), (0, '{"op":"reload"}'), (0, '{"op":"upgrade","binary":"/usr/sbin/superd"}'),
            (3, '{"op":"run","argv":["/bin/echo","hi"],"properties":["private_network=true"],"unit":"u"}'),
            (0, '{"op":"capsule","action":"start","name":"alice"}'), (0, '{"op":"capsule","action":"list"}'),
            (0, '{"op":"start","name":"web@1"}'), (0, '{"op":"stop","name":"web@1"}'), (0, '{"op":"keep","name":"x"}'),
            (0, '{"op":1}'), (5, '[]'), (0, '{"op":"run","argv":"x"}')]
    return [bytes([n]) + m.encode() for n, m in msgs]


def datagram_seeds():
    # kind (echo, discard, daytime, chargen, time), clock (4 bytes), cap (2 bytes), payload.
    seeds = []
    for kind in range(5):
        seeds.append(bytes([kind]) + struct.pack("<IH", 1700000000, 0) + b"hello\r\n")
    v4 = struct.pack("<H", 2) + struct.pack(">H", 7) + bytes([127, 0, 0, 1]) + bytes(8)
    v6 = struct.pack("<H", 10) + struct.pack(">H", 19) + bytes(4) + bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])
    seeds += [v4 + b"payload", v6 + b"x" * 40]
    return seeds


def syslog_seeds():
    # text bound (2 bytes), bytes cut by the receive buffer (1 byte), datagram.
    head = struct.pack("<HB", 2048, 0)
    lines = [b"<35>Dec  3 08:00:00 probe[1]: refused: bad password", b"<13>1 2024-01-02T03:04:05Z host app 1 - - msg",
             b"<191>2024-01-02T03:04:05.123+01:00 tag: x\n\0", b"no priority at all", b"<999>overflow", b"<1>"]
    return [head + l for l in lines] + [struct.pack("<HB", 8, 200) + lines[0]]


def proxy_seeds():
    """The examples of HAProxy's proxy-protocol.txt, v1 and v2 (each with TLVs), after the two
    bytes of fuzz_proxy's limits (any version; proxy_max_tlv = 128 * 32)."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"

    def tlv(t, v):
        return struct.pack("!BH", t, len(v)) + v

    a4 = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 56324, 443)
    a6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack("!HH", 1, 2)
    ssl = b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"cn")
    tlvs = tlv(0x02, b"example.com") + tlv(0x05, b"id") + tlv(0x20, ssl) + tlv(0x30, b"ns") + tlv(0x03, bytes(4))
    v2 = [sig + b"\x20\x00\x00\x00",
          sig + b"\x21\x11" + struct.pack("!H", len(a4)) + a4,
          sig + b"\x21\x11" + struct.pack("!H", len(a4 + tlvs)) + a4 + tlvs,
          sig + b"\x21\x21" + struct.pack("!H", len(a6)) + a6,
          sig + b"\x21\x31" + struct.pack("!H", 216) + bytes(216),
          sig + b"\x21\x00\x00\x00"]
    v1 = [b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n",
          b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
          b"PROXY UNKNOWN\r\n", b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"]
    return [b"\x02\x80" + h for h in v1 + v2]


if __name__ == "__main__":
    write("config", config_seeds())
    write("xinetd", xinetd_seeds())
    write("control", control_seeds())
    write("datagram", datagram_seeds())
    write("syslog", syslog_seeds())
    write("proxy", proxy_seeds())
