// admission::RateLimit: GCRA over exact mixed numbers (whole clock ticks + a remainder counted
// in 1/max ticks); see the header for the strategy.
#include "admission/rate.hpp"

#include <algorithm>

namespace superd::admission {
namespace {
constexpr std::chrono::milliseconds kMaxInterval = std::chrono::hours(24 * 366);
}

RateLimit::RateLimit(uint32_t max, std::chrono::milliseconds interval) noexcept
    : max_(interval.count() > 0 ? max : 0),
      interval_(std::chrono::duration_cast<Clock::duration>(std::min(interval, kMaxInterval))),
      step_(max_ ? interval_ / max_ : Clock::duration::zero()),
      step_rem_(max_ ? static_cast<uint32_t>(interval_.count() % max_) : 0) {}

RateLimit::Clock::time_point RateLimit::earliest() const noexcept {
  // TAT + T - interval; with a full bucket this lies in the past.
  Clock::time_point t = tat_ + step_ - interval_;
  uint64_t rem = uint64_t{tat_rem_} + step_rem_;
  if (rem >= max_) {
    t += Clock::duration(1);
    rem -= max_;
  }
  if (rem > 0) t += Clock::duration(1);  // round up: conforming means "not before"
  return t;
}

bool RateLimit::try_take(Clock::time_point now) noexcept {
  if (unlimited()) return true;
  if (now < earliest()) return false;
  // TAT = max(TAT, now) + T. A TAT in the past means the bucket is full: restart from now.
  if (tat_ < now || (tat_ == now && tat_rem_ == 0)) {
    tat_ = now;
    tat_rem_ = 0;
  }
  tat_ += step_;
  uint64_t rem = uint64_t{tat_rem_} + step_rem_;
  if (rem >= max_) {
    tat_ += Clock::duration(1);
    rem -= max_;
  }
  tat_rem_ = static_cast<uint32_t>(rem);
  return true;
}

RateLimit::Clock::time_point RateLimit::next_allowed(Clock::time_point now) const noexcept {
  if (unlimited()) return now;
  return std::max(now, earliest());
}

}  // namespace superd::admission
