// admission::RateLimit: burst, refusal, refill, next_allowed, unlimited; time is injected.
#include <catch2/catch.hpp>

#include "admission/rate.hpp"

using superd::admission::RateLimit;
using namespace std::chrono_literals;
using Clock = RateLimit::Clock;

namespace {
const Clock::time_point t0 = Clock::time_point{} + 1000h;  // an arbitrary "now"
}

TEST_CASE("rate: a burst of max is allowed at once, then refused", "[rate]") {
  RateLimit r(5, 1s);
  for (int i = 0; i < 5; ++i) CHECK(r.try_take(t0));
  CHECK_FALSE(r.try_take(t0));
  CHECK_FALSE(r.try_take(t0 + 199ms));
  CHECK(r.max() == 5);
  CHECK(r.interval() == 1s);
  CHECK_FALSE(r.unlimited());
}

TEST_CASE("rate: refill is continuous, max per interval; a full interval refills all", "[rate]") {
  RateLimit r(4, 1s);  // one token every 250 ms
  for (int i = 0; i < 4; ++i) REQUIRE(r.try_take(t0));
  REQUIRE_FALSE(r.try_take(t0));

  CHECK_FALSE(r.try_take(t0 + 250ms - 1ns));
  CHECK(r.try_take(t0 + 250ms));
  CHECK_FALSE(r.try_take(t0 + 250ms));

  // After a whole idle interval the bucket is full again, and no fuller than max.
  const auto t1 = t0 + 250ms + 1s;
  for (int i = 0; i < 4; ++i) CHECK(r.try_take(t1));
  CHECK_FALSE(r.try_take(t1));

  // Long idle: still capped at max.
  const auto t2 = t1 + 1h;
  for (int i = 0; i < 4; ++i) CHECK(r.try_take(t2));
  CHECK_FALSE(r.try_take(t2));
}

TEST_CASE("rate: sustained load gets max per interval", "[rate]") {
  RateLimit r(10, 100ms);
  int taken = 0;
  // Offer an event every millisecond for 10 s: 10 burst + 10 per 100 ms.
  for (int ms = 0; ms < 10000; ++ms) taken += r.try_take(t0 + std::chrono::milliseconds(ms));
  CHECK(taken == 10 + 999);  // refills land at 10, 20, ... 9990 ms
}

TEST_CASE("rate: next_allowed is now when allowed, otherwise the exact refill time", "[rate]") {
  RateLimit r(3, 1s);  // T = 333333333.3 ns: not a whole number of ticks
  CHECK(r.next_allowed(t0) == t0);
  for (int i = 0; i < 3; ++i) REQUIRE(r.try_take(t0));

  auto next = r.next_allowed(t0);
  CHECK(next > t0);
  CHECK(next == t0 + 333333334ns);  // rounded up, never early
  CHECK_FALSE(r.try_take(next - 1ns));
  CHECK(r.next_allowed(t0 + 100ms) == next);  // does not depend on when it is asked
  CHECK(r.try_take(next));
  CHECK_FALSE(r.try_take(next));

  // No drift: one interval after the burst, all three tokens have come back (the one taken
  // at `next` included), so two more are available at t0 + 1 s, and the next at + 1/3 s.
  CHECK(r.next_allowed(t0 + 1s) == t0 + 1s);
  CHECK(r.try_take(t0 + 1s));
  CHECK(r.try_take(t0 + 1s));
  CHECK_FALSE(r.try_take(t0 + 1s));
  CHECK(r.next_allowed(t0 + 1s) == t0 + 1s + 333333334ns);
}

TEST_CASE("rate: max = 1 spaces events by the interval", "[rate]") {
  RateLimit r(1, 2s);
  CHECK(r.try_take(t0));
  CHECK(r.next_allowed(t0) == t0 + 2s);
  CHECK_FALSE(r.try_take(t0 + 2s - 1ns));
  CHECK(r.try_take(t0 + 2s));
  CHECK(r.next_allowed(t0 + 3s) == t0 + 4s);
}

TEST_CASE("rate: max = 0 or a zero interval is unlimited", "[rate]") {
  for (RateLimit r : {RateLimit(0, 1s), RateLimit(5, 0ms), RateLimit(5, -1ms)}) {
    CHECK(r.unlimited());
    for (int i = 0; i < 100000; ++i) REQUIRE(r.try_take(t0));
    CHECK(r.next_allowed(t0) == t0);
  }
}

TEST_CASE("rate: the first event at the clock's epoch is allowed", "[rate]") {
  RateLimit r(2, 1s);
  CHECK(r.try_take(Clock::time_point{}));
  CHECK(r.try_take(Clock::time_point{}));
  CHECK_FALSE(r.try_take(Clock::time_point{}));
}
