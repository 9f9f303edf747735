"""What bench/faults.py's cases share: a superd on a scratch root under /srv/superd-faults, and
the leftover counts every case ends with (processes of its UID range, SysV and POSIX IPC objects,
lease records). Each case has its own scratch root, UID sub-range and ports, so a leftover of one
case is never counted against another."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import benchlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
import harness  # noqa: E402  (the tests' leftover scanners)

BASE = "/srv/superd-faults"


def build(*parts):
    return os.path.join(benchlib.BUILD, *parts)


# The leftover counts are the integration tests' own (tests/integration/harness.py): processes
# with a real, effective, saved or fs UID in the range, SysV objects, /dev/shm entries and POSIX
# queues (through a private mqueue mount) owned by a UID or GID of it.
procs_in_range = harness.uids_of_processes
ipc_in_range = harness.ipc_owned


def tcp_listening(port):
    """The accept queue length of the listener on 127.0.0.1:port (ss's Recv-Q), or None if
    nothing listens there."""
    r = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
    for line in r.stdout.splitlines():
        return int(line.split()[1])
    return None


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


class Superd:
    """One superd for a case: <BASE>/<case>/ with superd.toml (range [lo, hi], log level info),
    conf.d/ with `services` ({name: service file text}) and the roots beside them."""

    def __init__(self, case, lo, hi, services, extra=""):
        self.case, self.lo, self.hi = case, lo, hi
        self.root = os.path.join(BASE, case)
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root + "/conf.d")
        for d in (BASE, self.root):
            os.chmod(d, 0o755)
        benchlib.write_superd_toml(self.root, lo, hi, extra)
        with open(self.root + "/superd.toml") as f:
            text = f.read().replace('log_level = "warning"', 'log_level = "info"')
        with open(self.root + "/superd.toml", "w") as f:
            f.write(text)
        for name, text in services.items():
            self.write_service(name, text)
        self.log_path = self.root + "/superd.log"
        self.proc = None
        self.mounts = []

    def write_service(self, name, text):
        with open(f"{self.root}/conf.d/{name}.toml", "w") as f:
            f.write(text)

    def mount_tmpfs(self, sub, size):
        """A tmpfs of `size` at <root>/<sub> (a root superd uses), unmounted by close()."""
        path = os.path.join(self.root, sub)
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "none", path], check=True)
        self.mounts.append(path)
        return path

    def start(self, prefix=(), timeout=15):
        """Starts `prefix + superd serve --ready-fd`; returns the seconds to READY, or None if it
        did not become ready within `timeout` (it may have exited: see self.proc)."""
        r, w = os.pipe()
        logf = open(self.log_path, "ab")
        t0 = time.time()
        self.proc = subprocess.Popen([*prefix, benchlib.SUPERD, "serve", "-c", self.root + "/superd.toml",
                                      "--ready-fd", str(w)], pass_fds=[w], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf)
        logf.close()
        os.close(w)
        os.set_blocking(r, False)
        data = b""
        while time.time() - t0 < timeout and b"\n" not in data:
            try:
                chunk = os.read(r, 16)
                if not chunk:
                    break
                data += chunk
            except BlockingIOError:
                time.sleep(0.002)
        os.close(r)
        return time.time() - t0 if data == b"READY\n" else None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cli(self, *args, timeout=60):
        return benchlib.superd_cli(self.root, *args, timeout=timeout)

    def status(self):
        r = self.cli("status", "--json", timeout=20)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def pool(self):
        """The pool figures of `status --json` ({} if superd does not answer)."""
        st = self.status()
        return (st or {}).get("pool", {})

    def children(self):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def zygotes(self):
        """superd's children that run as root: its zygotes (instances are its children too, by
        CLONE_PARENT, but run as a UID of the range)."""
        out = []
        for pid in self.children():
            try:
                with open(f"/proc/{pid}/status") as f:
                    uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except (OSError, StopIteration):
                continue
            if uid == 0 and comm != "superd-sweep":
                out.append(pid)
        return out

    def lease_records(self):
        """Non-empty slots of the lease table (64-byte slots after a 64-byte header)."""
        try:
            with open(self.root + "/run/superd/dynamic-uid/leases", "rb") as f:
                data = f.read()
        except OSError:
            return 0
        return sum(1 for off in range(64, len(data) - 63, 64) if struct.unpack_from("<I", data, off)[0])

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def close(self):
        """SIGTERM (SIGKILL after 60 s), then SIGKILL by PID to any process of the range still
        there (an orphan of a killed superd), unmount what mount_tmpfs made, remove the root."""
        if self.alive():
            self.kill(signal.SIGCONT)
            self.kill(signal.SIGTERM)
        for _ in range(50):
            left = procs_in_range(self.lo, self.hi)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", path], capture_output=True)
        self.mounts = []
        keep = os.environ.get("FAULTS_KEEP_LOGS")
        if keep and os.path.exists(self.log_path):
            shutil.copy(self.log_path, os.path.join(keep, f"{self.case}.log"))
        shutil.rmtree(self.root, ignore_errors=True)
