// admission::RateLimit: at most `max` events per `interval` (max_connection_rate /
// connection_rate_interval). Pure: the caller passes the time, nothing here makes a syscall.
//
// Strategy: a token bucket of capacity `max` refilled continuously at `max` tokens per
// `interval`, so a burst of `max` is allowed at once and then one event every interval/max.
// It is kept in the GCRA ("virtual scheduling") form: a single time point, the theoretical
// arrival time (TAT) of the next event, advanced by the emission interval T = interval/max per
// event; an event at `now` conforms when now >= TAT - (interval - T). O(1) memory, no
// per-event history. Unlike a sliding log it does not remember individual events, so one
// interval-long window can hold up to 2*max - 1 events (a full bucket, then its refill); it
// never admits more than max at once, nor more than max per interval on average.
// T is kept exactly as whole clock ticks plus a remainder in 1/max ticks, so there is no drift
// and a full bucket is back exactly one interval after it was emptied.
#pragma once

#include <chrono>
#include <cstdint>

namespace superd::admission {

class RateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  // max == 0 (or interval <= 0): unlimited. The interval is capped at one year.
  RateLimit(uint32_t max, std::chrono::milliseconds interval) noexcept;

  // Takes one event at `now` if the rate allows it. `now` should not go backwards (steady_clock).
  bool try_take(Clock::time_point now) noexcept;
  // The earliest time try_take would succeed: `now` itself if it would succeed now, otherwise
  // a later time (the daemon's "defer" action arms its timer until then).
  Clock::time_point next_allowed(Clock::time_point now) const noexcept;

  bool unlimited() const noexcept { return max_ == 0; }
  uint32_t max() const noexcept { return max_; }
  Clock::duration interval() const noexcept { return interval_; }

 private:
  // The earliest conforming time, TAT - (interval - T), rounded up to a whole tick.
  Clock::time_point earliest() const noexcept;

  uint32_t max_;
  Clock::duration interval_;
  Clock::duration step_;  // T = step_ + step_rem_ / max_
  uint32_t step_rem_;
  Clock::time_point tat_{};  // TAT = tat_ + tat_rem_ / max_
  uint32_t tat_rem_ = 0;
};

}  // namespace superd::admission
