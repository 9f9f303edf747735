// units: durations and sizes at their bounds. The largest accepted value and the first refused
// one, for each unit; sums that would wrap; and the config error a too-long duration gives
// (FILE:LINE:COL: key: message, through config::parse_service as test_config.cpp does).
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "util/units.hpp"

using namespace superd;
using namespace std::chrono;
using Catch::Matchers::Contains;

namespace {

units::ParseError duration_error(std::string_view s) {
  units::ParseError why = units::ParseError::malformed;
  INFO(s);
  CHECK_FALSE(units::parse_duration(s, &why));
  return why;
}

units::ParseError size_error(std::string_view s) {
  units::ParseError why = units::ParseError::malformed;
  INFO(s);
  CHECK_FALSE(units::parse_size(s, &why));
  return why;
}

std::string problems_of(const std::string& service_lines) {
  config::Problems p;
  auto svc = config::parse_service(
      "[socket]\nlisten = [\"127.0.0.1:14001\"]\n[service]\nexec = [\"/bin/true\"]\n" + service_lines, "u.toml", "u",
      p);
  std::string s;
  for (const auto& x : p.list()) s += x.to_string() + "\n";
  if (svc) CHECK(p.empty());
  return s;
}

}  // namespace

TEST_CASE("units: the longest duration is 36500 days, in every unit", "[units]") {
  constexpr auto kMax = units::kMaxDuration;
  CHECK(kMax == hours(24 * 36500));
  CHECK(units::kMaxDurationText == "36500d");
  // Ticks of the steady clock (nanoseconds) hold it with room for "now" on top.
  CHECK(duration_cast<steady_clock::duration>(kMax).count() < steady_clock::duration::max().count() / 2);

  CHECK(*units::parse_duration("36500d") == kMax);
  CHECK(*units::parse_duration("876000h") == kMax);
  CHECK(*units::parse_duration("52560000min") == kMax);
  CHECK(*units::parse_duration("3153600000s") == kMax);
  CHECK(*units::parse_duration("3153600000") == kMax);  // bare seconds
  CHECK(*units::parse_duration("3153600000000ms") == kMax);
  CHECK(*units::parse_duration("36499d 23h 59min 59s 999ms") == kMax - milliseconds(1));
  CHECK(*units::parse_duration("36499d 24h") == kMax);

  using E = units::ParseError;
  CHECK(duration_error("36501d") == E::out_of_range);
  CHECK(duration_error("876001h") == E::out_of_range);
  CHECK(duration_error("52560001min") == E::out_of_range);
  CHECK(duration_error("3153600001s") == E::out_of_range);
  CHECK(duration_error("3153600001") == E::out_of_range);
  CHECK(duration_error("3153600000001ms") == E::out_of_range);
  CHECK(duration_error("36500d 1ms") == E::out_of_range);
  // The review's value: fits in int64 milliseconds, wraps in nanoseconds.
  CHECK(duration_error("106751991167d") == E::out_of_range);
  // Terms that each fit in 64 bits but whose sum wrapped to a small value.
  CHECK(duration_error("100000000000d 100000000000d 100000000000d") == E::out_of_range);
  CHECK(duration_error("18446744073709551615ms") == E::out_of_range);
  CHECK(duration_error("99999999999999999999999s") == E::out_of_range);  // past 2^64 itself
  // Malformed stays malformed, however long.
  CHECK(duration_error("99999999999999999999999parsecs") == E::malformed);
  CHECK(duration_error("36501d x") == E::malformed);
  CHECK(duration_error("") == E::malformed);
  CHECK(duration_error("-1s") == E::malformed);
  CHECK(*units::parse_duration("0") == milliseconds(0));
}

TEST_CASE("units: sizes up to 2^64-1 bytes, past it refused", "[units]") {
  using E = units::ParseError;
  CHECK(*units::parse_size("18446744073709551614") == UINT64_MAX - 1);
  CHECK(size_error("18446744073709551616") == E::out_of_range);
  CHECK(*units::parse_size("17179869183G") == (17179869183ULL << 30));
  CHECK(size_error("17179869184G") == E::out_of_range);
  CHECK(*units::parse_size("16777215T") == (16777215ULL << 40));
  CHECK(size_error("16777216T") == E::out_of_range);
  CHECK(*units::parse_size("18014398509481983K") == (18014398509481983ULL << 10));
  CHECK(size_error("18014398509481984KiB") == E::out_of_range);
  CHECK(size_error("99999999999999999999999Q") == E::malformed);
  CHECK(size_error("12Q") == E::malformed);
}

TEST_CASE("units: a too-long duration is a config error with its position and key", "[units]") {
  CHECK_THAT(problems_of("runtime_max = \"106751991167d\"\n"),
             Contains("u.toml:5:15: service.runtime_max: duration \"106751991167d\" is too long (at most 36500d)"));
  CHECK_THAT(problems_of("timeout_stop = \"36501d\"\n"),
             Contains("u.toml:5:16: service.timeout_stop: duration \"36501d\" is too long"));
  // An integer is seconds: bounded the same way (seconds * 1000 wrapped int64 before).
  CHECK_THAT(problems_of("runtime_max = 9223372036854775\n"),
             Contains("u.toml:5:15: service.runtime_max: duration 9223372036854775 is too long"));
  CHECK_THAT(problems_of("runtime_max = 3153600001\n"),
             Contains("service.runtime_max: duration 3153600001 is too long"));
  // A limit, in a sub-table.
  CHECK_THAT(problems_of("[service.limits]\ncpu = \"36501d\"\nfsize = \"16777216T\"\n"),
             Contains("u.toml:6:7: service.limits.cpu: value \"36501d\" is too large") &&
                 Contains("u.toml:7:9: service.limits.fsize: value \"16777216T\" is too large"));
  // The bound itself is accepted.
  CHECK(problems_of("runtime_max = \"36500d\"\ntimeout_stop = 3153600000\n").empty());
  CHECK_THAT(problems_of("runtime_max = \"soon\"\n"), Contains("service.runtime_max: bad duration \"soon\""));
}
