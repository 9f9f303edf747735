// Logging: one line per event on stderr, "LEVEL message", formatted with fmt.
// Library code (pool, config, cleanup) returns errors as values; the daemon logs them once,
// at the top, with service, serial, uid and peer.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace superd::log {

enum class Level { debug = 0, info = 1, warning = 2, error = 3 };

void set_level(Level l) noexcept;
Level level() noexcept;
bool parse_level(std::string_view s, Level& out) noexcept;
void write(Level l, std::string_view msg) noexcept;

template <typename... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void warning(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::warning) write(Level::warning, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void error(fmt::format_string<A...> f, A&&... a) {
  write(Level::error, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace superd::log
