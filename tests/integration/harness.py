"""Integration-test harness: runs the real superd, as root, on a scratch root outside /tmp and
/var/tmp, against real loopback sockets, and checks what the probe service reports from inside
its instance. Every test gets its own UID range, ports and scratch directory (meson runs tests
in parallel), and ends with a leak check: no process, IPC object, /dev/shm or /dev/mqueue file
owned by a UID of its range, and an empty lease table."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SUPERD = os.environ.get("SUPERD", "")
PROBE = os.environ.get("PROBE", "")
SCRATCH_BASE = os.environ.get("SUPERD_TEST_SCRATCH", "/srv/superd-test")


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)  # meson's "skipped"


def require_root():
    if os.geteuid() != 0:
        skip("needs root: superd switches to dynamic UIDs and builds namespaces")
    if not SUPERD or not os.path.exists(SUPERD):
        skip("SUPERD not set; run through meson test")


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def uids_of_processes(lo, hi):
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            continue
        state = uid_line = ""
        for line in status.splitlines():
            if line.startswith("State:"):
                state = line
            elif line.startswith("Uid:"):
                uid_line = line
        if "Z" in state.split()[1:2]:
            continue
        for u in uid_line.split()[1:]:
            if lo <= int(u) <= hi:
                out[int(pid)] = int(u)
    return out


def ipc_owned(lo, hi):
    found = []
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        cols = lines[0].split()
        for line in lines[1:]:
            v = dict(zip(cols, line.split()))
            if any(lo <= int(v.get(c, -1)) <= hi for c in ("uid", "gid", "cuid", "cgid")):
                found.append(f"sysv-{kind} {line.split()[1]}")
    try:
        for name in os.listdir("/dev/shm"):
            st = os.lstat(os.path.join("/dev/shm", name))
            if lo <= st.st_uid <= hi or lo <= st.st_gid <= hi:
                found.append(f"/dev/shm/{name}")
    except OSError:
        pass
    found += [f"mqueue {name}" for name, uid, gid in mqueues() if lo <= uid <= hi or lo <= gid <= hi]
    return found


def mqueues():
    """Every POSIX message queue of the host's IPC namespace as (name, uid, gid). Queues are only
    visible through an mqueue filesystem, and this host mounts none at /dev/mqueue: look through
    a private mount of our own, in a mount namespace of our own (nothing shows on the host)."""
    os.makedirs(SCRATCH_BASE, exist_ok=True)
    view = os.path.join(SCRATCH_BASE, f".mqueue-view-{os.getpid()}")
    os.makedirs(view, exist_ok=True)
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            f'mount -t mqueue none "{view}" && find "{view}" -mindepth 1 -printf "%f %U %G\\n"'],
                           capture_output=True, text=True, timeout=10)
    finally:
        os.rmdir(view)
    if r.returncode != 0:
        raise Failure(f"cannot look at POSIX message queues: {r.stderr.strip()}")
    out = []
    for line in r.stdout.splitlines():
        name, uid, gid = line.rsplit(" ", 2)
        out.append((name, int(uid), int(gid)))
    return out


class Superd:
    """One superd under test. `services` maps a service name to its TOML text; "@PROBE@" and
    "@ROOT@" in it are replaced by the probe's path and the scratch root."""

    def __init__(self, name, services, uid_range, global_extra="", xinetd=None):
        """`xinetd`: the text of an xinetd-style file (with "@PROBE@"/"@ROOT@" replaced too), written
        to ROOT/xinetd.conf and served with `superd serve --xinetd FILE -c superd.toml`."""
        require_root()
        self.name = name
        self.lo, self.hi = uid_range
        self.root = os.path.join(SCRATCH_BASE, f"{name}-{os.getpid()}")
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(os.path.join(self.root, "conf.d"))
        os.makedirs(os.path.join(self.root, "bin"))
        # The dynamic UID must be able to reach the probe: every directory up to it gets o+x.
        for d in (SCRATCH_BASE, self.root, os.path.join(self.root, "bin")):
            os.chmod(d, 0o755)
        self.probe = os.path.join(self.root, "bin", "probe")
        if PROBE:
            shutil.copy(PROBE, self.probe)
            os.chmod(self.probe, 0o755)
        self.config = os.path.join(self.root, "superd.toml")
        with open(self.config, "w") as f:
            f.write(f"""[superd]
dynamic_uid_range = [{self.lo}, {self.hi}]
runtime_root = "{self.root}/run"
state_root = "{self.root}/lib"
cache_root = "{self.root}/cache"
logs_root = "{self.root}/log"
{global_extra}
""")
        for svc, text in services.items():
            self.write_service(svc, text)
        self.log_path = os.path.join(self.root, "superd.log")
        self.proc = None
        self.xinetd_path = None
        if xinetd is not None:
            self.xinetd_path = os.path.join(self.root, "xinetd.conf")
            with open(self.xinetd_path, "w") as f:
                f.write(xinetd.replace("@PROBE@", self.probe).replace("@ROOT@", self.root))

    def write_service(self, svc, text):
        text = text.replace("@PROBE@", self.probe).replace("@ROOT@", self.root)
        with open(os.path.join(self.root, "conf.d", f"{svc}.toml"), "w") as f:
            f.write(text)

    def run_cli(self, *args, env=None):
        return subprocess.run([SUPERD, *args], capture_output=True, text=True, timeout=60, env=env)

    def start(self, env=None, expect_ready=True, wrapper=()):
        """`wrapper`: a command that execs superd in place (`ip netns exec NS`), so the PID stays."""
        r, w = os.pipe()
        self.logf = open(self.log_path, "ab")
        xinetd = ["--xinetd", self.xinetd_path] if self.xinetd_path else []
        self.proc = subprocess.Popen([*wrapper, SUPERD, "serve", *xinetd, "-c", self.config, "--ready-fd", str(w)],
                                     pass_fds=[w], stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=env)
        os.close(w)
        data = b""
        deadline = time.time() + 15
        os.set_blocking(r, False)
        while time.time() < deadline and b"\n" not in data:
            try:
                chunk = os.read(r, 64)
                if not chunk:
                    break
                data += chunk
            except BlockingIOError:
                time.sleep(0.01)
        os.close(r)
        if expect_ready:
            check(data == b"READY\n", f"superd did not become ready: {data!r}\n{self.log()}")
        return data

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, needle, count=1, timeout=15):
        if poll_until(lambda: self.log().count(needle) >= count, timeout, interval=0.02):
            return True
        raise Failure(f"log never showed {count}x {needle!r}:\n{self.log()[-4000:]}")

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("superd did not stop within the deadline")
        self._forget()
        return rc

    def stop_clean(self):
        """The usual end of a test: SIGTERM, exit status 0, and nothing of the UID range left
        (assert_clean)."""
        rc = self.stop()
        check(rc == 0, f"superd must exit 0 on SIGTERM: exit {rc}")
        self.assert_clean()

    def kill(self):
        """SIGKILL, as a crash would end superd: it cleans nothing up, and its instances run on."""
        self.proc.kill()
        self.proc.wait()
        self._forget()

    def wait_exit(self, timeout):
        """Waits for a superd that ends by itself (a refused start); returns its exit status."""
        rc = self.proc.wait(timeout=timeout)
        self._forget()
        return rc

    def _forget(self):
        """The process has been waited for: the next start() gets a fresh one."""
        self.proc = None
        self.logf.close()

    def cli(self, verb, *args):
        """`superd VERB -c CONFIG ARGS...` against this test's configuration."""
        return self.run_cli(verb, "-c", self.config, *args)

    def zygotes(self):
        """The PIDs of superd's children: its zygotes, and nothing else while no instance lives."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return [int(x) for x in f.read().split()]

    def lease_records(self):
        path = os.path.join(self.root, "run", "superd", "dynamic-uid", "leases")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return []
        out = []
        for off in range(64, len(data) - 63, 64):
            uid, pid = struct.unpack_from("<Ii", data, off)
            if uid:
                out.append((uid, pid))
        return out

    def assert_clean(self, timeout=10):
        """Nothing owned by this test's UID range survives: processes, IPC, files, leases."""
        deadline = time.time() + timeout
        while True:
            procs = uids_of_processes(self.lo, self.hi)
            ipc = ipc_owned(self.lo, self.hi)
            leases = self.lease_records() if self.proc is None else []
            if not procs and not ipc and not leases:
                return
            if time.time() > deadline:
                raise Failure(f"leaked: processes {procs}, ipc {ipc}, leases {leases}\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def close(self):
        """After a failed test too: SIGTERM first, so superd ends its instances and removes their
        IPC objects (a SIGKILL would leave them to a superd with the same scratch root, which
        never comes); SIGKILL only if it does not stop in time. Then any program started from
        this scratch root that is still there (a static user's instance, outside the UID range
        superd sweeps, or an orphan of a killed superd) is killed, by PID."""
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.logf.close()
            self.proc = None
        for pid in processes_mentioning(self.root + "/"):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        keep = os.environ.get("SUPERD_TEST_KEEP_LOGS")
        if keep and os.path.exists(self.log_path):
            # tests/sanitize/run: UBSan reports only reach superd's stderr, this log.
            shutil.copy(self.log_path, os.path.join(keep, f"{os.path.basename(self.root)}-{time.monotonic_ns()}.log"))
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# How many zygotes superd starts for a service that spawns through them: one per CPU, at most 4.
ZYGOTES_PER_SERVICE = min(max(os.cpu_count() or 1, 1), 4)


def toml_list(values):
    """A TOML array of strings (a JSON string is a TOML basic string)."""
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def addresses(listen):
    """A port number (127.0.0.1:PORT), an address or path as it is, or a list of them."""
    if isinstance(listen, (int, str)):
        listen = [listen]
    return [f"127.0.0.1:{a}" if isinstance(a, int) else a for a in listen]


def service_file(socket_lines, service_lines, extra=""):
    """A service file: [socket] with `socket_lines`, then [service] with `service_lines` and
    `extra` (so service() with one listen line and no socket_extra puts `extra` on line 5)."""
    return f"[socket]\n{socket_lines}\n[service]\n{service_lines}\n{extra}\n"


def service(listen, *args, extra="", socket_extra="", program="@PROBE@"):
    """A service file running `program` (the probe unless told) with `args`, listening on
    `listen` (see addresses); `socket_extra` and `extra`: more [socket] and [service] lines."""
    socket_lines = f"listen = {toml_list(addresses(listen))}"
    if socket_extra:
        socket_lines += "\n" + socket_extra.rstrip("\n")
    return service_file(socket_lines, f"exec = {toml_list([program, *args])}", extra)


def internal_service(name, listen=None, datagram=None, socket_extra=""):
    """A service file for one of superd's internal services (echo, discard, daytime, chargen,
    time) on the stream addresses `listen` and the datagram addresses `datagram`."""
    lines = []
    if listen is not None:
        lines.append(f"listen = {toml_list(addresses(listen))}")
    if datagram is not None:
        lines.append(f"listen_datagram = {toml_list(addresses(datagram))}")
    if socket_extra:
        lines.append(socket_extra.rstrip("\n"))
    return service_file("\n".join(lines), f'internal = "{name}"')


def xinetd_stream(name, port, lines):
    """An xinetd `service` entry: an UNLISTED TCP service on 127.0.0.1:port, wait = no, as
    nobody, with `lines` (attribute lines, each ending in a newline) added."""
    return f"""service {name}
{{
        type            = UNLISTED
        port            = {port}
        bind            = 127.0.0.1
        socket_type     = stream
        protocol        = tcp
        wait            = no
        user            = nobody
{lines}}}
"""


def talk_tcp(port, send=b"", host="127.0.0.1", timeout=10, shutdown=True, source=None):
    """Connects (from the address `source`, if given), sends `send`, half-closes unless told not
    to, and returns everything received until the peer closes or `timeout` passes."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        if send:
            s.sendall(send)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)


def talk_unix(path, send=b"", timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        if send:
            s.sendall(send)
        s.shutdown(socket.SHUT_WR)
        return read_all(s)


def talk_udp(port, send, host="127.0.0.1", timeout=5, replies=1, source=None):
    """Sends one datagram from a fresh socket (bound to the address `source`, if given); returns
    up to `replies` datagrams received (fewer if the timeout passes first)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    got = []
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.sendto(send, (host, port))
        while len(got) < replies:
            try:
                got.append(s.recv(65536))
            except socket.timeout:
                break
    return got


def listen_inode(port):
    """The inode of the TCP socket listening on `port` (v4 or v6), or None: a reload that keeps
    a listener keeps this number."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                    return parts[9]
    return None


def processes_mentioning(text):
    """PIDs (other than this one) whose command line contains `text`: for services that run as a
    static user, outside the test's dynamic UID range, whose leftovers assert_clean cannot see."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            out.append(int(pid))
    return out


def fields(text):
    """The probe's "KEY=VALUE KEY=VALUE..." report (its id line) as a dict."""
    return dict(kv.split("=", 1) for kv in text.split())


def poll_until(cond, timeout, interval=0.05):
    """Calls cond() until it returns something true or `timeout` seconds have passed; returns
    its last value (a check on it then says what never happened)."""
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)


def wait_until(cond, timeout, what):
    check(poll_until(cond, timeout), f"timed out after {timeout}s waiting for {what}")


def read_bytes(path):
    """A file's bytes, or b"" while it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_bytes(path, needle, timeout=15):
    """The file's bytes once they hold `needle`, or as they are when `timeout` passes."""
    poll_until(lambda: needle in read_bytes(path), timeout)
    return read_bytes(path)


def read_all(s):
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def parallel(fn, n):
    """Runs fn(i) for i in range(n) on n threads at once; returns results in order."""
    results = [None] * n
    errors = []

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def main(tests):
    """Runs each test function; prints one line per test; exit 0 only if all passed."""
    failed = 0
    for t in tests:
        try:
            t()
            print(f"ok   {t.__name__}")
        except Failure as e:
            failed += 1
            print(f"FAIL {t.__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {t.__name__}: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)
