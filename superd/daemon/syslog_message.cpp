#include "daemon/syslog_message.hpp"

#include <fmt/format.h>

namespace superd::daemon::syslog {
namespace {

bool digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

// "<PRI>": its value and length, or 0 when there is none (or it is out of range).
size_t priority_header(std::string_view s, int& value) noexcept {
  if (s.size() < 3 || s[0] != '<') return 0;
  int v = 0;
  size_t i = 1;
  for (; i < s.size() && i <= 3 && digit(s[i]); ++i) v = v * 10 + (s[i] - '0');
  if (i == 1 || i >= s.size() || s[i] != '>' || v > 191) return 0;
  value = v;
  return i + 1;
}

// RFC 3164's "Mmm dd hh:mm:ss " (the day space-padded): 16 bytes, or 0.
size_t bsd_timestamp(std::string_view s) noexcept {
  static constexpr std::string_view kShape = "Aaa dd dd:dd:dd ";  // A: upper, a: lower, d: digit
  if (s.size() < kShape.size()) return 0;
  for (size_t i = 0; i < kShape.size(); ++i) {
    char c = s[i], k = kShape[i];
    bool ok = k == 'A'   ? c >= 'A' && c <= 'Z'
              : k == 'a' ? c >= 'a' && c <= 'z'
              : k == 'd' ? digit(c) || (i == 4 && c == ' ')
                         : c == k;
    if (!ok) return 0;
  }
  return kShape.size();
}

// An RFC 3339 timestamp and its space ("2024-01-02T03:04:05.123456+00:00 "), or 0.
size_t iso_timestamp(std::string_view s) noexcept {
  if (s.size() < 20 || !digit(s[0]) || !digit(s[3]) || s[4] != '-' || s[10] != 'T') return 0;
  size_t sp = s.find(' ');
  return sp == std::string_view::npos || sp > 40 ? 0 : sp + 1;
}

// The next space-separated word and its space, or 0.
size_t word(std::string_view s) noexcept {
  size_t sp = s.find(' ');
  return sp == std::string_view::npos || sp == 0 ? 0 : sp + 1;
}

// The header before the tag: a timestamp (RFC 3164 or 3339), or RFC 5424's "1 TIMESTAMP HOST ".
size_t timestamp_header(std::string_view s) noexcept {
  if (size_t n = bsd_timestamp(s)) return n;
  if (size_t n = iso_timestamp(s)) return n;
  if (s.size() > 2 && s[0] == '1' && s[1] == ' ') {
    std::string_view rest = s.substr(2);
    size_t ts = rest.substr(0, 2) == "- " ? 2 : iso_timestamp(rest);
    if (ts == 0) return 0;
    size_t host = word(rest.substr(ts));
    return host ? 2 + ts + host : 0;
  }
  return 0;
}

}  // namespace

Message parse(std::string_view datagram, size_t full_size, size_t max_text) {
  Message m;
  std::string_view s = datagram;
  int pri = 13;  // user.notice
  if (size_t n = priority_header(s, pri)) {
    s.remove_prefix(n);
    s.remove_prefix(timestamp_header(s));
  }
  m.facility = pri >> 3;
  m.severity = pri & 7;
  const size_t header = datagram.size() - s.size();
  const bool truncated = full_size > datagram.size();
  if (!truncated)
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.remove_suffix(1);
  m.size = truncated ? full_size - header : s.size();
  if (s.size() > max_text) {
    size_t end = max_text;
    // Not inside a UTF-8 sequence: back over continuation bytes (at most 3).
    for (int k = 0; k < 3 && end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80; ++k) --end;
    s = s.substr(0, end);
  }
  m.text = s;
  m.cut = m.size > s.size();
  return m;
}

std::string priority_name(int facility, int severity) {
  static constexpr const char* kFacilities[] = {"kern",   "user",   "mail",   "daemon", "auth",     "syslog",
                                                "lpr",    "news",   "uucp",   "cron",   "authpriv", "ftp",
                                                "ntp",    "audit",  "alert",  "clock",  "local0",   "local1",
                                                "local2", "local3", "local4", "local5", "local6",   "local7"};
  static constexpr const char* kSeverities[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};
  std::string f = facility >= 0 && facility < static_cast<int>(std::size(kFacilities)) ? kFacilities[facility]
                                                                                       : std::to_string(facility);
  return f + "." + kSeverities[severity & 7];
}

log::Level level_of(int severity) noexcept {
  if (severity <= 3) return log::Level::error;
  if (severity == 4) return log::Level::warning;
  if (severity <= 6) return log::Level::info;
  return log::Level::debug;
}

Budget::Verdict Budget::take(Clock::time_point now) noexcept {
  Verdict v;
  if (now >= window_end()) {
    v.report = dropped_;
    start_ = now;
    logged_ = 0;
    dropped_ = 0;
  }
  if (logged_ < kPerSecond) {
    ++logged_;
    v.log = true;
  } else {
    v.first_drop = dropped_++ == 0;
  }
  return v;
}

uint64_t Budget::take_dropped() noexcept {
  uint64_t n = dropped_;
  dropped_ = 0;
  return n;
}

}  // namespace superd::daemon::syslog
