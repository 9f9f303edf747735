#!/usr/bin/env python3
"""bench/loadgen_check: bench/loadgen against a server whose answer is known.

The server (asyncio, in this process, on 127.0.0.1) writes "hello\\n" 10 ms after each accept
and closes; it can be told to hold every answer until a given moment (a stall). Three runs:
  1. open loop, -r 500 -d 10: p50 within 10-13 ms, ok within 2% of 5,000, nothing failed;
  2. open loop again, with a 1 s stall injected 5 s in: p99.9 >= 900 ms (the stall is seen);
  3. at the same time as 2, a closed loop at -c 5 against a second port of the same server:
     its p99 stays near 10 ms (coordinated omission: the stall holds its 5 connections, and
     so the measurements, back), which is what the open loop exists to avoid.
Prints every figure and exits 1 if a check fails. A bench, never a meson test (it is timing).
Usage: python3 bench/loadgen_check.py [BUILD_DIR (default build)]"""

import asyncio
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BUILD", os.path.join(os.path.dirname(HERE), "build"))
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
DELAY = 0.010
RATE, SECONDS = 500, 10
stall_until = 0.0


async def serve(reader, writer):
    await asyncio.sleep(DELAY)
    hold = stall_until - time.monotonic()
    if hold > 0:
        await asyncio.sleep(hold)
    writer.write(b"hello\n")
    try:
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def loadgen(port, *args):
    proc = await asyncio.create_subprocess_exec(
        LOADGEN, "--target", f"127.0.0.1:{port}", "--expect", "hello\\n", "--json", "--no-progress", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=SECONDS + 30)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise SystemExit("loadgen_check: loadgen did not finish in time")
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    return json.loads(out.decode().strip().splitlines()[-1])


async def stall_at(after, length):
    global stall_until
    await asyncio.sleep(after)
    stall_until = time.monotonic() + length


def line(name, j):
    return (f"{name:<28} ok={j['ok']:<5} failed={j['failed']:<3} late={j['late']:<3} {j['conns_per_s']:7.1f}/s  "
            f"p50={j['p50_ms']:.2f}  p90={j['p90_ms']:.2f}  p99={j['p99_ms']:.2f}  p99.9={j['p999_ms']:.2f}  "
            f"max={j['max_ms']:.2f} ms")


async def main():
    if not os.access(LOADGEN, os.X_OK):
        raise SystemExit(f"loadgen_check: no {LOADGEN}; build first (ninja -C {BUILD} bench/loadgen)")
    servers = [await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024) for _ in range(2)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    checks = []

    def check(ok, what):
        checks.append((ok, what))

    try:
        base = await loadgen(ports[0], "-r", str(RATE), "-d", str(SECONDS))
        print(line(f"open -r {RATE} -d {SECONDS}", base))
        check(10.0 <= base["p50_ms"] <= 13.0, f"open loop p50 {base['p50_ms']} ms within 10-13 ms")
        check(abs(base["ok"] - RATE * SECONDS) <= 0.02 * RATE * SECONDS, f"ok {base['ok']} within 2% of {RATE * SECONDS}")
        check(base["failed"] == 0, f"failed {base['failed']} == 0")

        opened, closed, _ = await asyncio.gather(loadgen(ports[0], "-r", str(RATE), "-d", str(SECONDS)),
                                                 loadgen(ports[1], "-c", "5", "-d", str(SECONDS)),
                                                 stall_at(SECONDS / 2, 1.0))
        print(line(f"open -r {RATE}, 1 s stall", opened))
        print(line("closed -c 5, same stall", closed))
        check(opened["p999_ms"] >= 900.0, f"open loop with the stall: p99.9 {opened['p999_ms']} ms >= 900 ms")
        check(opened["p99_ms"] >= 500.0, f"open loop with the stall: p99 {opened['p99_ms']} ms >= 500 ms")
        check(closed["p99_ms"] < 50.0, f"closed loop with the same stall: p99 {closed['p99_ms']} ms < 50 ms (hidden)")
        check(closed["max_ms"] >= 900.0, f"closed loop: only its max {closed['max_ms']} ms shows the stall")
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()
    for ok, what in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
