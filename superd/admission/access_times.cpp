// admission::AccessTimes: parsing "H:MM-H:MM" lists and the inclusive, midnight-wrapping test.
#include "admission/access_times.hpp"

#include <fmt/format.h>

#include <string_view>

namespace superd::admission {
namespace {

// Reads 1..2 digits at s[pos]; false if there are none or more than two.
bool read_number(std::string_view s, size_t& pos, int& out) {
  size_t start = pos;
  out = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - start < 3) {
    out = out * 10 + (s[pos] - '0');
    ++pos;
  }
  return pos > start && pos - start <= 2;
}

// One "H:MM" at s[pos]; on failure `why` names the problem (without the interval).
bool read_time(std::string_view s, size_t& pos, int& minute_of_day, std::string& why) {
  int h = 0, m = 0;
  if (!read_number(s, pos, h) || pos >= s.size() || s[pos] != ':') {
    why = "expected \"HH:MM-HH:MM\"";
    return false;
  }
  ++pos;
  if (!read_number(s, pos, m)) {
    why = "expected \"HH:MM-HH:MM\"";
    return false;
  }
  if (h > 23) {
    why = fmt::format("hour {} is out of range 0..23", h);
    return false;
  }
  if (m > 59) {
    why = fmt::format("minute {} is out of range 0..59", m);
    return false;
  }
  minute_of_day = h * 60 + m;
  return true;
}

}  // namespace

std::optional<AccessTimes> AccessTimes::parse(const std::vector<std::string>& intervals, std::string& why) {
  if (intervals.empty()) {
    why = "empty list of access times (leave the key out to allow every time)";
    return std::nullopt;
  }
  if (intervals.size() > kMaxIntervals) {
    why = fmt::format("{} access times; at most {}", intervals.size(), kMaxIntervals);
    return std::nullopt;
  }
  AccessTimes a;
  a.intervals_.reserve(intervals.size());
  for (const std::string& text : intervals) {
    std::string_view s = text;
    size_t pos = 0;
    int start = 0, end = 0;
    std::string problem;
    bool ok = read_time(s, pos, start, problem);
    if (ok && (pos >= s.size() || s[pos] != '-')) {
      problem = "expected \"HH:MM-HH:MM\"";
      ok = false;
    }
    if (ok) {
      ++pos;  // past '-'
      ok = read_time(s, pos, end, problem);
    }
    if (ok && pos != s.size()) {
      problem = "expected \"HH:MM-HH:MM\"";
      ok = false;
    }
    if (ok && start == end) {
      problem = "start and end are the same minute";
      ok = false;
    }
    if (!ok) {
      why = fmt::format("access time \"{}\": {}", text, problem);
      return std::nullopt;
    }
    a.intervals_.push_back({static_cast<int16_t>(start), static_cast<int16_t>(end)});
  }
  return a;
}

bool AccessTimes::allows(int minute) const noexcept {
  if (intervals_.empty()) return true;
  for (const Interval& i : intervals_) {
    bool inside = i.start <= i.end ? (i.start <= minute && minute <= i.end) : (minute >= i.start || minute <= i.end);
    if (inside) return true;
  }
  return false;
}

std::string AccessTimes::to_string() const {
  std::string s;
  for (const Interval& i : intervals_) {
    if (!s.empty()) s += ' ';
    s += fmt::format("{:02}:{:02}-{:02}:{:02}", i.start / 60, i.start % 60, i.end / 60, i.end % 60);
  }
  return s;
}

int AccessTimes::minute_of_day(std::time_t t) noexcept {
  std::tm tm{};
  if (!::localtime_r(&t, &tm)) return 0;
  return tm.tm_hour * 60 + tm.tm_min;
}

int AccessTimes::minute_of_day_now() noexcept {
  return minute_of_day(std::time(nullptr));
}

}  // namespace superd::admission
