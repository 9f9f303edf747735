// Duration and size parsing (see units.hpp). Every multiplication and addition is checked
// against the bound before it is done, so no input can wrap around to a small value.
#include "util/units.hpp"

#include <cctype>
#include <string>

namespace superd::util::units {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Reads a non-negative integer prefix; false if there is none, `overflow` if it does not fit.
bool read_number(std::string_view& s, uint64_t& out, bool& overflow) {
  overflow = false;
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s.front()))) return false;
  uint64_t v = 0;
  while (!s.empty() && std::isdigit(static_cast<unsigned char>(s.front()))) {
    uint64_t d = static_cast<uint64_t>(s.front() - '0');
    if (v > (UINT64_MAX - d) / 10)
      overflow = true;  // keep reading: "99...9x" is still malformed
    else
      v = v * 10 + d;
    s.remove_prefix(1);
  }
  out = v;
  return true;
}

template <typename T>
std::optional<T> fail(ParseError* error, ParseError why) {
  if (error) *error = why;
  return std::nullopt;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s, ParseError* error) {
  struct Unit {
    std::string_view name;
    uint64_t ms;
  };
  // Longest names first so "min" is not read as "m" + "in"; "m" is minutes, as in systemd.
  static constexpr Unit kUnits[] = {
      {"msec", 1},        {"ms", 1},          {"seconds", 1000}, {"second", 1000}, {"sec", 1000},
      {"s", 1000},        {"minutes", 60000}, {"minute", 60000}, {"min", 60000},   {"m", 60000},
      {"hours", 3600000}, {"hour", 3600000},  {"hr", 3600000},   {"h", 3600000},   {"days", 86400000},
      {"day", 86400000},  {"d", 86400000},
  };
  constexpr auto kMax = static_cast<uint64_t>(kMaxDuration.count());
  using R = std::chrono::milliseconds;
  s = trim(s);
  if (s.empty()) return fail<R>(error, ParseError::malformed);
  // The whole string is read before an out-of-range term is reported, so a malformed string is
  // always called malformed.
  uint64_t total = 0;
  bool too_long = false;
  while (!s.empty()) {
    uint64_t n = 0;
    bool overflow = false;
    if (!read_number(s, n, overflow)) return fail<R>(error, ParseError::malformed);
    s = trim(s);
    uint64_t mult = 1000;  // a bare number is seconds
    bool bare = true;
    for (const Unit& u : kUnits) {
      if (s.substr(0, u.name.size()) == u.name &&
          (s.size() == u.name.size() || !std::isalpha(static_cast<unsigned char>(s[u.name.size()])))) {
        mult = u.ms;
        s.remove_prefix(u.name.size());
        bare = false;
        break;
      }
    }
    if (bare && !s.empty() && std::isalpha(static_cast<unsigned char>(s.front())))
      return fail<R>(error, ParseError::malformed);
    // Checked against the bound before multiplying or adding: total <= kMax, so nothing wraps.
    if (overflow || n > kMax / mult || n * mult > kMax - total)
      too_long = true;
    else
      total += n * mult;
    s = trim(s);
  }
  if (too_long) return fail<R>(error, ParseError::out_of_range);
  return std::chrono::milliseconds(static_cast<int64_t>(total));
}

std::optional<uint64_t> parse_size(std::string_view s, ParseError* error) {
  s = trim(s);
  if (s == "infinity") return kInfinity;
  uint64_t n = 0;
  bool overflow = false;
  if (!read_number(s, n, overflow)) return fail<uint64_t>(error, ParseError::malformed);
  s = trim(s);
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.front()) {
      case 'K':
      case 'k':
        mult = 1ULL << 10;
        break;
      case 'M':
        mult = 1ULL << 20;
        break;
      case 'G':
        mult = 1ULL << 30;
        break;
      case 'T':
        mult = 1ULL << 40;
        break;
      case 'B':
        mult = 1;
        break;
      default:
        return fail<uint64_t>(error, ParseError::malformed);
    }
    s.remove_prefix(1);
    if (s == "iB" || s == "B") s = {};  // "MiB", "MB" read as binary, like systemd
    if (!s.empty()) return fail<uint64_t>(error, ParseError::malformed);
  }
  if (overflow || n > UINT64_MAX / mult) return fail<uint64_t>(error, ParseError::out_of_range);
  return n * mult;
}

}  // namespace superd::util::units
