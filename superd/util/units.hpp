// Parsers for the human-written quantities of the config: durations ("30s", "5min", "1h 30min",
// a bare number = seconds, as systemd) and sizes ("512M", "4K", "1G"; binary multiples, a bare
// number = bytes). "infinity" is accepted where a limit may be unbounded.
// Bounds: a duration is at most kMaxDuration, so that every accepted value survives the
// conversion to steady_clock ticks (signed 64-bit nanoseconds, about 292 years) and the addition
// to "now" that timers do; without the bound, "106751991167d" fits in milliseconds but wraps to
// a negative number of nanoseconds and fires at once. A size is at most 2^64 - 1 bytes. Nothing
// wraps: a value past its bound is refused as out of range, never reduced modulo anything.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace superd::util::units {

inline constexpr uint64_t kInfinity = UINT64_MAX;
// 36500 days (about 100 years): far below the ~292 years steady_clock can hold, with room for
// the clock's own reading (time since boot) to be added to it.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 36500);
inline constexpr std::string_view kMaxDurationText = "36500d";

// Why a parse failed: not a duration/size at all, or a well-formed one past its bound.
enum class ParseError { malformed, out_of_range };

// Milliseconds, or nullopt on a malformed string or one longer than kMaxDuration (`error`, if
// given, says which).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s, ParseError* error = nullptr);
// Bytes, kInfinity for "infinity", or nullopt on a malformed string or one past 2^64 - 1 bytes.
std::optional<uint64_t> parse_size(std::string_view s, ParseError* error = nullptr);

}  // namespace superd::util::units

// Called by its short name across superd (units::...); it lives in util/.
namespace superd {
namespace units = util::units;
}  // namespace superd
