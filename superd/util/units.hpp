// Parsers for the human-written quantities of the config: durations ("30s", "5min", "1h 30min",
// a bare number = seconds, as systemd) and sizes ("512M", "4K", "1G"; binary multiples, a bare
// number = bytes). "infinity" is accepted where a limit may be unbounded.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace superd::units {

inline constexpr uint64_t kInfinity = UINT64_MAX;

// Milliseconds, or nullopt on a malformed string.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);
// Bytes, kInfinity for "infinity", or nullopt on a malformed string.
std::optional<uint64_t> parse_size(std::string_view s);

}  // namespace superd::units
