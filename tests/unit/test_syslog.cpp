// The syslog datagram parser and the per-service line budget (daemon/syslog_message.hpp), fed
// from strings and time points.
#include <catch2/catch.hpp>
#include <string>

#include "daemon/event_log.hpp"
#include "daemon/syslog_message.hpp"

using namespace superd::daemon;
using syslog::Budget;

namespace {
syslog::Message parse(std::string_view d, size_t max = syslog::kMaxText) {
  return syslog::parse(d, d.size(), max);
}
}  // namespace

TEST_CASE("syslog: glibc's RFC 3164 datagram: priority decoded, timestamp stripped, tag kept") {
  auto m = parse("<35>Dec  3 08:00:00 probe[1]: refused: bad password");  // auth.err
  CHECK(m.facility == 4);
  CHECK(m.severity == 3);
  CHECK(m.text == "probe[1]: refused: bad password");
  CHECK_FALSE(m.cut);
  CHECK(syslog::priority_name(m.facility, m.severity) == "auth.err");
  auto two_digit_day = parse("<13>Nov 23 11:22:33 cvs: hello");
  CHECK(two_digit_day.text == "cvs: hello");
  CHECK(syslog::priority_name(two_digit_day.facility, two_digit_day.severity) == "user.notice");
}

TEST_CASE("syslog: RFC 5424 and RFC 3339 headers are stripped too") {
  auto m = parse("<86>1 2024-01-02T03:04:05.123456+00:00 host sshd 42 - - Accepted key");
  CHECK(syslog::priority_name(m.facility, m.severity) == "authpriv.info");
  CHECK(m.text == "sshd 42 - - Accepted key");
  CHECK(parse("<30>2024-01-02T03:04:05Z vsftpd[9]: ok").text == "vsftpd[9]: ok");
  CHECK(parse("<30>1 - - app - - - nil").text == "app - - - nil");
}

TEST_CASE("syslog: a datagram without a valid <PRI> is all text at user.notice") {
  for (const char* d : {"plain words", "<192>too high", "<>empty", "<12 no end", "<1234>four digits"}) {
    auto m = parse(d);
    CHECK(m.text == d);
    CHECK(syslog::priority_name(m.facility, m.severity) == "user.notice");
  }
  auto no_stamp = parse("<191>local7 debug without a timestamp");  // the largest priority
  CHECK(syslog::priority_name(no_stamp.facility, no_stamp.severity) == "local7.debug");
  CHECK(no_stamp.text == "local7 debug without a timestamp");
  CHECK(parse("<0>Jan  1 00:00:00 k: x").severity == 0);
  CHECK(syslog::priority_name(0, 0) == "kern.emerg");
  CHECK(syslog::priority_name(24, 3) == "24.err");
}

TEST_CASE("syslog: trailing newlines and NULs go; an empty message stays empty") {
  CHECK(parse(std::string_view("<14>Jan  1 00:00:00 t: line\n\0", 30)).text == "t: line");
  auto empty = parse("");
  CHECK(empty.text.empty());
  CHECK(empty.size == 0);
  CHECK(parse("<14>").text.empty());
}

TEST_CASE("syslog: a long message is cut at the bound, its full size kept") {
  std::string d = "<11>Jan  1 00:00:00 t: " + std::string(5000, 'x');
  auto m = parse(d, 100);
  CHECK(m.cut);
  CHECK(m.text.size() == 100);
  CHECK(m.size == 5003);  // "t: " and the x's
  CHECK(m.text.substr(0, 4) == "t: x");
  // Truncated by the receive buffer: the datagram's real size says how long it was.
  auto t = syslog::parse(std::string_view(d).substr(0, 300), d.size(), 100);
  CHECK(t.cut);
  CHECK(t.size == d.size() - 20);
  // Exactly at the bound: not cut.
  CHECK_FALSE(parse("<11>" + std::string(100, 'y'), 100).cut);
  // Never inside a UTF-8 sequence: "é" is two bytes, the bound falls between them.
  auto u = parse("<11>" + std::string(99, 'a') + "\xc3\xa9", 100);
  CHECK(u.cut);
  CHECK(u.text.size() == 99);
}

TEST_CASE("syslog: the line format, with '?' for what superd cannot tell") {
  CHECK(event_log::syslog_line("ftp", 7, 61184, "auth.err", "vsftpd[1]: refused", 18) ==
        "ftp[7] uid=61184 syslog.auth.err: vsftpd[1]: refused");
  CHECK(event_log::syslog_line("ftp", std::nullopt, std::nullopt, "user.notice", "x", 1) ==
        "ftp[?] uid=? syslog.user.notice: x");
  CHECK(event_log::syslog_line("ftp", 1, 5, "user.info", "abc", 5000) ==
        "ftp[1] uid=5 syslog.user.info: abc [cut: 5000 bytes]");
  CHECK(event_log::syslog_dropped("ftp", 12, 50) == "ftp syslog: 12 messages dropped (at most 50 a second are logged)");
}

TEST_CASE("syslog: severities map onto superd's log levels") {
  using superd::log::Level;
  CHECK(syslog::level_of(0) == Level::error);
  CHECK(syslog::level_of(3) == Level::error);
  CHECK(syslog::level_of(4) == Level::warning);
  CHECK(syslog::level_of(5) == Level::info);
  CHECK(syslog::level_of(6) == Level::info);
  CHECK(syslog::level_of(7) == Level::debug);
}

TEST_CASE("syslog: at most kPerSecond lines a second, then one count") {
  Budget b;
  auto t0 = Budget::Clock::time_point{} + std::chrono::hours(1);
  for (uint32_t i = 0; i < Budget::kPerSecond; ++i) {
    auto v = b.take(t0 + std::chrono::milliseconds(i));
    CHECK(v.log);
    CHECK(v.report == 0);
  }
  auto first = b.take(t0 + std::chrono::milliseconds(100));
  CHECK_FALSE(first.log);
  CHECK(first.first_drop);
  CHECK(b.window_end() == t0 + std::chrono::seconds(1));
  for (int i = 0; i < 9; ++i) CHECK_FALSE(b.take(t0 + std::chrono::milliseconds(200)).first_drop);
  // The next window reports the ten dropped before it logs again.
  auto next = b.take(t0 + std::chrono::milliseconds(1000));
  CHECK(next.log);
  CHECK(next.report == 10);
  // The window's end timer takes the count instead: nothing left to report after.
  for (uint32_t i = 1; i < Budget::kPerSecond + 3; ++i) b.take(t0 + std::chrono::milliseconds(1500));  // 1 in
  CHECK(b.take_dropped() == 3);
  CHECK(b.take(t0 + std::chrono::seconds(3)).report == 0);
}
