// The internal services superd serves in its own loop (RFC 862 echo, 863 discard, 867 daytime,
// 864 chargen, 868 time), as a plain value: the one list of their names. The config module
// parses `internal = "NAME"` with it at load; inloop.hpp serves them. No I/O, no Boost.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

namespace superd::inloop {

enum class Internal { echo, discard, daytime, chargen, time };

// Every internal service with its name, in the order errors list them.
inline constexpr std::array<std::pair<Internal, const char*>, 5> kInternalNames{{
    {Internal::echo, "echo"},
    {Internal::discard, "discard"},
    {Internal::daytime, "daytime"},
    {Internal::chargen, "chargen"},
    {Internal::time, "time"},
}};

// "echo", "discard", "daytime", "chargen", "time"; anything else is nullopt.
constexpr std::optional<Internal> parse_internal(std::string_view name) {
  for (const auto& [which, text] : kInternalNames)
    if (name == std::string_view(text)) return which;
  return std::nullopt;
}

constexpr const char* internal_name(Internal which) {
  for (const auto& [w, text] : kInternalNames)
    if (w == which) return text;
  return "?";
}

}  // namespace superd::inloop
