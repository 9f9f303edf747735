"""max_connection_rate: at most N new connections per connection_rate_interval. "refuse" accepts
the excess, logs REFUSE and closes it; "defer" leaves it in the kernel backlog until the window
has room, so every client is served, only later. Neither disables the service (xinetd's cps
does: a DoS lever). Datagram internal services count datagrams."""
import re
import socket
import time
from harness import Superd, check, main, parallel, read_all, talk_tcp

LO, HI = 82000, 82099
PORT = 32000


def limited(port, rate, action, interval="1s"):
    return f"""[socket]
listen = ["127.0.0.1:{port}"]
backlog = 256
max_connection_rate = {rate}
connection_rate_interval = "{interval}"
connection_rate_action = "{action}"
[service]
exec = ["@PROBE@", "id"]
"""


def timed_client(port, timeout):
    """(answer, time it arrived)."""
    with socket.socket() as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.shutdown(socket.SHUT_WR)
        out = read_all(s)
    return out, time.time()


def test_refuse_past_the_rate():
    port = PORT
    d = Superd("raterefuse", {"rl": limited(port, 5, "refuse")}, (LO, HI))
    try:
        d.start()
        n = 40
        t0 = time.time()
        outs = parallel(lambda i: timed_client(port, 10), n)  # bounded: 40 clients, 10 s each
        connected_in = max(t for _, t in outs) - t0
        served = sum(1 for o, _ in outs if o.startswith(b"uid="))
        refused_clients = sum(1 for o, _ in outs if o == b"")
        check(served + refused_clients == n, f"every client got an answer or a close: {[o[:20] for o, _ in outs]}")
        # The flood lasts well under 2 s, so it meets at most 2 windows of 5 (3 if it straddles two edges).
        windows = int(connected_in) + 2
        check(1 <= served <= 5 * windows, f"{served} of {n} served in {connected_in:.2f}s at 5 per 1s")
        check(refused_clients >= n - 5 * windows, f"{refused_clients} refused")
        d.wait_log("REFUSE rl ", refused_clients)
        refusals = re.findall(r"REFUSE rl peer=127\.0\.0\.1:\d+ reason=\"([^\"]*)\"", d.log())
        check(len(refusals) == refused_clients, f"{len(refusals)} REFUSE lines for {refused_clients} refused clients")
        check(all("rate" in r for r in refusals), f"reasons: {set(refusals)}")
        d.wait_log("EXIT rl ", served)
        check(d.log().count("START rl ") == served, "one START per served client")
        # Not disabled: once the window has passed, the service answers again.
        time.sleep(1.2)
        for _ in range(3):
            out = talk_tcp(port).decode()
            check(out.startswith("uid="), f"the service answers after the flood: {out!r}\n{d.log()[-2000:]}")
        check(d.proc.poll() is None, "superd runs")
        check(d.stop() == 0, "exit 0")
        d.assert_clean()
    finally:
        d.close()


def test_defer_serves_the_excess_later():
    port = PORT + 1
    d = Superd("ratedefer", {"rl": limited(port, 5, "defer")}, (LO, HI))
    try:
        d.start()
        n = 20
        t0 = time.time()
        outs = parallel(lambda i: timed_client(port, 20), n)  # 20 at 5/s: about 3 s; each bounded by 20 s
        served = [t - t0 for o, t in outs if o.startswith(b"uid=")]
        check(len(served) == n, f"all {n} served, {len(served)} were\n{d.log()[-2000:]}")
        served.sort()
        spread = served[-1] - served[0]
        check(spread >= 1.9, f"20 connections at 5 per 1s must take at least ~2 intervals, took {spread:.2f}s")
        check(spread < 15, f"took {spread:.2f}s")
        # Never more than two windows' worth within one interval (a fixed window may pass 5 at its
        # end and 5 at the start of the next).
        for i, t in enumerate(served):
            within = sum(1 for u in served[i:] if u - t < 0.9)
            check(within <= 10, f"{within} answered within 0.9s of {t:.2f}: {[round(x, 2) for x in served]}")
        check("REFUSE" not in d.log(), f"defer never refuses:\n{d.log()[-2000:]}")
        d.wait_log("EXIT rl ", n)
        out = talk_tcp(port).decode()
        check(out.startswith("uid="), "still serving")
        check(d.stop() == 0, "exit 0")
        d.assert_clean()
    finally:
        d.close()


def test_datagram_rate_of_an_internal_service():
    port = PORT + 2
    d = Superd("rateudp", {"echo": f"""[socket]
listen_datagram = ["127.0.0.1:{port}"]
max_connection_rate = 5
connection_rate_interval = "1s"
connection_rate_action = "refuse"
[service]
internal = "echo"
"""}, (LO, HI))
    try:
        d.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            t0 = time.time()
            for i in range(30):
                s.sendto(b"%d" % i, ("127.0.0.1", port))
            sent_in = time.time() - t0
            replies = []
            deadline = time.time() + 3
            while time.time() < deadline:
                try:
                    replies.append(s.recv(100))
                except socket.timeout:
                    break
        check(1 <= len(replies) <= 5 * (int(sent_in) + 2), f"{len(replies)} of 30 datagrams echoed at 5 per 1s")
        check(len(replies) < 30, "the rate limit dropped nothing")
        time.sleep(1.2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(b"after", ("127.0.0.1", port))
            check(s.recv(100) == b"after", "echoes again after the window")
        check(d.stop() == 0, "exit 0")
        d.assert_clean()
    finally:
        d.close()


if __name__ == "__main__":
    main([test_refuse_past_the_rate, test_defer_serves_the_excess_later, test_datagram_rate_of_an_internal_service])
