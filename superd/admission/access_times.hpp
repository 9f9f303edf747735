// admission::AccessTimes: the local-time intervals in which a service takes connections
// (service key access_times, xinetd's access_times). Outside every interval the daemon refuses.
//
// Each interval is "H:MM-H:MM" (hours 0..23, minutes 0..59, one or two digits each, as
// xinetd's get_num accepts). Both bounds are inclusive and the resolution is the minute, as in
// xinetd: "08:00-12:00" admits 12:00:59. Differences from xinetd (time.c ti_add):
//   - start > end wraps over midnight ("22:00-06:00" = 22:00..23:59 and 00:00..06:00); xinetd
//     refuses such an interval ("invalid time interval").
//   - start == end is refused, as in xinetd (one minute or the whole day? say which).
//   - an empty list is refused, as in xinetd 2.3.15's access_times_parser; a service without
//     the key uses a default-constructed AccessTimes, which allows every time.
// Pure apart from minute_of_day_now(), which reads the clock and the time zone.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace superd::admission {

class AccessTimes {
 public:
  struct Interval {
    int16_t start;  // minute of the day, 0..1439
    int16_t end;    // inclusive; end < start wraps over midnight
  };
  static constexpr size_t kMaxIntervals = 64;

  AccessTimes() = default;  // no restriction

  static std::optional<AccessTimes> parse(const std::vector<std::string>& intervals, std::string& why);

  // minute_of_day: 0..1439 (hour * 60 + minute, local time).
  bool allows(int minute_of_day) const noexcept;
  bool empty() const noexcept { return intervals_.empty(); }
  const std::vector<Interval>& intervals() const noexcept { return intervals_; }
  // "08:00-12:00 13:00-17:30" ("" when empty), for logs and `superd check`.
  std::string to_string() const;

  static int minute_of_day(std::time_t t) noexcept;  // localtime_r
  static int minute_of_day_now() noexcept;

 private:
  std::vector<Interval> intervals_;
};

}  // namespace superd::admission
