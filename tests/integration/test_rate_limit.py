"""max_connection_rate: at most N new connections per connection_rate_interval. "refuse" accepts
the excess, logs REFUSE and closes it; "defer" leaves it in the kernel backlog until the window
has room, so every client is served, only later. Neither disables the service (xinetd's cps
does: a DoS lever). Datagram internal services count datagrams."""
import re
import socket
import time
from harness import Superd, check, internal_service, main, parallel, service, talk_tcp, talk_udp

LO, HI = 82000, 82099
PORT = 32000


def rate_keys(rate, action):
    """[socket] lines: at most `rate` new connections a second, then `action`."""
    return f'max_connection_rate = {rate}\nconnection_rate_interval = "1s"\nconnection_rate_action = "{action}"'


def limited(port, rate, action):
    return service(port, "id", socket_extra="backlog = 256\n" + rate_keys(rate, action))


def timed_client(port, timeout):
    """(answer, time it arrived)."""
    return talk_tcp(port, timeout=timeout), time.time()


def test_refuse_past_the_rate():
    port = PORT
    with Superd("raterefuse", {"rl": limited(port, 5, "refuse")}, (LO, HI)) as d:
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
        d.stop_clean()


def test_defer_serves_the_excess_later():
    port = PORT + 1
    with Superd("ratedefer", {"rl": limited(port, 5, "defer")}, (LO, HI)) as d:
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
        d.stop_clean()


def test_datagram_rate_of_an_internal_service():
    port = PORT + 2
    echo = internal_service("echo", datagram=port, socket_extra=rate_keys(5, "refuse"))
    with Superd("rateudp", {"echo": echo}, (LO, HI)) as d:
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
        check(talk_udp(port, b"after", timeout=3) == [b"after"], "echoes again after the window")
        d.stop_clean()


if __name__ == "__main__":
    main([test_refuse_past_the_rate, test_defer_serves_the_excess_later, test_datagram_rate_of_an_internal_service])
