// admission::AccessTimes: parsing, inclusive bounds (as xinetd), wrap over midnight.
#include <catch2/catch.hpp>

#include "admission/access_times.hpp"

using superd::admission::AccessTimes;

namespace {
constexpr int hm(int h, int m) {
  return h * 60 + m;
}

AccessTimes parse_ok(std::vector<std::string> v) {
  std::string why;
  auto a = AccessTimes::parse(v, why);
  INFO(why);
  REQUIRE(a);
  return *a;
}

std::string parse_error(std::vector<std::string> v) {
  std::string why;
  auto a = AccessTimes::parse(v, why);
  CHECK_FALSE(a);
  CHECK_FALSE(why.empty());
  return why;
}
}  // namespace

TEST_CASE("access_times: parse errors name the interval and the problem", "[access_times]") {
  CHECK_THAT(parse_error({"25:00-26:00"}),
             Catch::Contains("\"25:00-26:00\"") && Catch::Contains("hour 25 is out of range"));
  CHECK_THAT(parse_error({"10:60-11:00"}), Catch::Contains("minute 60 is out of range"));
  CHECK_THAT(parse_error({"10:00-24:00"}), Catch::Contains("hour 24"));
  CHECK_THAT(parse_error({"10:00-11:99"}), Catch::Contains("minute 99"));
  CHECK_THAT(parse_error({"10:00 11:00"}), Catch::Contains("expected \"HH:MM-HH:MM\""));
  CHECK_THAT(parse_error({"10:00"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"1000-1100"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"garbage"}), Catch::Contains("\"garbage\""));
  CHECK_THAT(parse_error({""}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"10:00-11:00x"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({" 10:00-11:00"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"100:00-11:00"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"10:000-11:00"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"-1:00-11:00"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"10:-11:00"}), Catch::Contains("expected"));
  CHECK_THAT(parse_error({"10:00-11:00", "12:00-1x:00"}), Catch::Contains("\"12:00-1x:00\""));
  CHECK_THAT(parse_error({"10:00-10:00"}), Catch::Contains("same minute"));
  CHECK_THAT(parse_error({}), Catch::Contains("empty"));
  CHECK_THAT(parse_error(std::vector<std::string>(AccessTimes::kMaxIntervals + 1, "01:00-02:00")),
             Catch::Contains("at most"));
}

TEST_CASE("access_times: inside and outside, bounds inclusive", "[access_times]") {
  auto a = parse_ok({"08:00-12:00", "13:00-17:30"});
  CHECK(a.to_string() == "08:00-12:00 13:00-17:30");
  CHECK_FALSE(a.empty());
  CHECK_FALSE(a.allows(hm(0, 0)));
  CHECK_FALSE(a.allows(hm(7, 59)));
  CHECK(a.allows(hm(8, 0)));  // start bound
  CHECK(a.allows(hm(10, 30)));
  CHECK(a.allows(hm(12, 0)));  // end bound (xinetd: accepted at the bounds)
  CHECK_FALSE(a.allows(hm(12, 1)));
  CHECK_FALSE(a.allows(hm(12, 59)));
  CHECK(a.allows(hm(13, 0)));
  CHECK(a.allows(hm(17, 30)));
  CHECK_FALSE(a.allows(hm(17, 31)));
  CHECK_FALSE(a.allows(hm(23, 59)));
}

TEST_CASE("access_times: one-digit fields as xinetd accepts; whole-day bounds", "[access_times]") {
  auto a = parse_ok({"2:30-4:5"});
  CHECK(a.to_string() == "02:30-04:05");
  CHECK(a.allows(hm(2, 30)));
  CHECK(a.allows(hm(4, 5)));
  CHECK_FALSE(a.allows(hm(4, 6)));

  auto day = parse_ok({"00:00-23:59"});
  for (int m = 0; m < 1440; ++m) REQUIRE(day.allows(m));
}

TEST_CASE("access_times: start > end wraps over midnight", "[access_times]") {
  auto a = parse_ok({"22:00-06:00"});
  CHECK(a.intervals().size() == 1);
  CHECK(a.intervals()[0].start == hm(22, 0));
  CHECK(a.intervals()[0].end == hm(6, 0));
  CHECK(a.to_string() == "22:00-06:00");
  CHECK_FALSE(a.allows(hm(21, 59)));
  CHECK(a.allows(hm(22, 0)));
  CHECK(a.allows(hm(23, 59)));
  CHECK(a.allows(hm(0, 0)));
  CHECK(a.allows(hm(6, 0)));
  CHECK_FALSE(a.allows(hm(6, 1)));
  CHECK_FALSE(a.allows(hm(12, 0)));

  auto b = parse_ok({"23:59-00:00"});  // two minutes
  int n = 0;
  for (int m = 0; m < 1440; ++m) n += b.allows(m);
  CHECK(n == 2);
}

TEST_CASE("access_times: empty allows everything; minute_of_day from local time", "[access_times]") {
  AccessTimes none;
  CHECK(none.empty());
  CHECK(none.to_string().empty());
  for (int m = 0; m < 1440; ++m) REQUIRE(none.allows(m));

  int now = AccessTimes::minute_of_day_now();
  CHECK(now >= 0);
  CHECK(now < 1440);
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  REQUIRE(::localtime_r(&t, &tm));
  CHECK(AccessTimes::minute_of_day(t) == tm.tm_hour * 60 + tm.tm_min);
}
