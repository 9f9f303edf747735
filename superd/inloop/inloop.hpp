// Services served inside superd's event loop, without a child process: the RFC 862/863/867/864/
// 868 internal services (echo, discard, daytime, chargen, time) over TCP and UDP, and the TCP
// relay behind `redirect`. Everything runs on the daemon's single-threaded io_context.
//
// Invariants: every buffer is bounded (a session never reads more while its write is pending, so
// a slow reader stalls its writer instead of growing memory); nothing here logs (the daemon logs
// once, from the Done callback); Done fires exactly once, always from a posted handler, and never
// after the Session has been destroyed.
#pragma once

// clang-format off
#include <utility>  // before any Boost include (Boost 1.74 trap)
// clang-format on

#include <sys/socket.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "inloop/datagram_guard.hpp"    // OwnSockets, ReplyLimiter: the stateful datagram guards
#include "inloop/internal_service.hpp"  // Internal, parse_internal, internal_name
#include "util/unique_fd.hpp"

namespace superd::inloop {

struct Traffic {
  uint64_t from_client = 0;  // bytes read from the client connection
  uint64_t to_client = 0;    // bytes written to it
};

// Called exactly once per session, always via asio::post (never from inside a call the daemon
// made into the session), so the daemon may destroy the session inside it. By then every socket
// of the session is closed. `ec` empty = clean end (EOF from the client, or the service
// finished), else the error that ended it.
using Done = std::function<void(Traffic, std::error_code)>;

// A running session. Destroying it closes its sockets, cancels its waits and never calls done
// (not even if done was already posted and has not run yet). It must be destroyed before the
// io_context it runs on.
class Session {
 public:
  virtual ~Session() = default;
  // The bytes so far: for the EXIT line of a session the daemon ends itself (runtime_max, stop),
  // which gets no done.
  virtual Traffic traffic() const = 0;
};

// A TCP (or UNIX stream) internal service on an accepted connection; the session owns `conn`.
//   echo:    echoes until the client's EOF, finishing pending writes first (half-close works).
//   discard: reads until EOF.
//   daytime: one ctime-like line in local time ("Tue Dec  1 08:02:16 2026\r\n"), then closes.
//   time:    4 bytes, big-endian seconds since 1900-01-01 UTC, then closes.
//   chargen: rotating 72-character lines until the client closes or resets (that end is clean:
//            it is the only way chargen ends); input is read and discarded.
std::unique_ptr<Session> serve_stream(boost::asio::io_context& io, Internal which, UniqueFd conn, Done done);

// A TCP relay: connects (non-blocking, async) to `target`, then copies both ways through one
// 64 KiB buffer per direction, propagates a half-close with shutdown(SHUT_WR), and finishes when
// both directions reached EOF (clean) or on the first error/reset (both sockets closed). A failed
// connect ends with that error and closes the client. There is no connect timeout of its own: the
// kernel's SYN retries bound it, and the daemon's runtime_max may cut it shorter.
std::unique_ptr<Session> relay(boost::asio::io_context& io, UniqueFd conn, const sockaddr_storage& target,
                               socklen_t target_len, Done done);

// Datagram forms (RFC 862 etc. over UDP): the reply to one datagram `in` into `out` (capacity
// `cap`, at least kMinDatagramCap), returning its length, or nullopt for no reply (discard).
// daytime/time ignore the payload; chargen replies with a random-length (0..512) slice of the
// pattern (starting at line 0); echo returns the payload (truncated to cap). Call
// drop_datagram_from and OwnSockets::contains first, and send only what a ReplyLimiter allows.
constexpr size_t kMinDatagramCap = 512;
std::optional<size_t> answer_datagram(Internal which, const char* in, size_t in_len, char* out, size_t cap, time_t now);

// Pure pieces, for tests.
std::string daytime_text(time_t now);           // local time, ends "\r\n"
std::array<uint8_t, 4> time_bytes(time_t now);  // RFC 868, big-endian, mod 2^32
constexpr size_t kChargenLineLen = 74;          // 72 printable characters + "\r\n"
constexpr size_t kChargenCycle = 95;            // lines before the pattern repeats
std::string chargen_line(size_t n);             // the n-th line (0-based)

// Amplification/loop guard for datagram services: true if a datagram from `peer` must get no
// reply. Dropped: any source port below 1024 (xinetd's bad_port_check and OpenBSD's dg_badinput:
// that covers port 0 and every internal service port 7, 9, 13, 19, 37, so two internal servers
// never ping-pong, and reflecting to DNS, NTP, ... too), port 2049 (NFS, as OpenBSD), and source
// addresses no real sender has (unspecified, broadcast, multicast). v4-mapped peers are checked as
// IPv4. Non-IP families are never dropped.
bool drop_datagram_from(const sockaddr* peer);

}  // namespace superd::inloop
