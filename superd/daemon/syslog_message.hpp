// What one datagram on a service's /dev/log says, as pure functions (unit-tested from strings in
// tests/unit/test_syslog.cpp): its priority, its text without the header glibc's syslog(3) puts in
// front, cut to a bound; and the per-service budget of lines a second. The socket and the loop
// that reads it are daemon/syslog.cpp's.
//
// A datagram in the local (RFC 3164) form glibc, busybox and util-linux's logger send:
//   "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE"     PRI = facility * 8 + severity, 0..191
// An RFC 5424 "<PRI>1 2024-01-02T03:04:05Z host app pid msgid - MESSAGE" and a bare
// RFC 3339 timestamp are stripped too. The timestamp is the sender's clock (superd's own line has
// one); the tag is the program's word for itself and stays in the text. A datagram without a
// valid <PRI> is all text, at user.notice (RFC 3164's default).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/log.hpp"

namespace superd::daemon::syslog {

constexpr size_t kMaxText = 2048;  // bytes of a message logged; the rest is cut

struct Message {
  int facility = 1;       // user
  int severity = 5;       // notice
  std::string_view text;  // header stripped, trailing newlines and NULs dropped, at most kMaxText
  size_t size = 0;        // the text's full size, before the cut
  bool cut = false;
};

// `datagram`: the bytes received; `full_size`: the datagram's size (larger when the receive
// buffer truncated it). The text views into `datagram`.
Message parse(std::string_view datagram, size_t full_size, size_t max_text = kMaxText);

// "auth.err", "local7.debug"; numbers for what has no name ("24.err").
std::string priority_name(int facility, int severity);
// The level of superd's own log a severity is logged at: emerg..err error, warning warning,
// notice and info info, debug debug.
log::Level level_of(int severity) noexcept;

// At most kPerSecond lines a second per service; the rest are counted, and the count is logged
// in one line (by the daemon: when the window's end timer fires, or when the next message opens
// a new window before it did).
class Budget {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kPerSecond = 50;

  struct Verdict {
    bool log = false;         // log this message
    bool first_drop = false;  // the first one dropped in this window: arm the end timer
    uint64_t report = 0;      // dropped in an earlier window and not reported yet: log the count first
  };
  Verdict take(Clock::time_point now) noexcept;
  // The dropped count so far, reset (the window's end timer reports it).
  uint64_t take_dropped() noexcept;
  Clock::time_point window_end() const noexcept { return start_ + std::chrono::seconds(1); }

 private:
  Clock::time_point start_{};
  uint32_t logged_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace superd::daemon::syslog
