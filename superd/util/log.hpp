// Logging: one line per event on stderr, "LEVEL message", formatted with fmt.
// Library code (pool, config, cleanup) returns errors as values; the daemon logs them once,
// at the top, with service, serial, uid and peer.
// Every line is escaped (append_escaped) on its way out, here and in every log::Sink: a line
// carries text superd does not control (a service's stderr, a peer's name, a config value), and
// a raw CR, LF or ESC in it could end the line early or overwrite it on a terminal, i.e. forge
// a "START ... uid=0" line.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace superd::util::log {

enum class Level { debug = 0, info = 1, warning = 2, error = 3 };

void set_level(Level l) noexcept;
Level level() noexcept;
bool parse_level(std::string_view s, Level& out) noexcept;
// One line "LEVEL: msg\n" in a single write(2), msg escaped; never throws.
void write(Level l, std::string_view msg) noexcept;
class Sink;
// Where write() sends superd's own lines instead of stderr ([superd] log_target); nullptr:
// stderr again. The sink must outlive its use.
void set_output(const Sink* sink) noexcept;

// Appends `s` to `out` with its control bytes escaped, C-style: TAB, LF and CR become "\t",
// "\n" and "\r", every other byte 0x00-0x1f and 0x7f becomes "\xHH" (two lower-case hex
// digits: ESC is "\x1b"), and a backslash becomes "\\" so an escape cannot be forged. Other
// bytes, UTF-8 included, pass unchanged. A clean string is appended in one copy.
void append_escaped(fmt::memory_buffer& out, std::string_view s);

// "ENOENT (No such file or directory)": an errno as log lines show it.
std::string errno_text(int err);

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

}  // namespace superd::util::log

// Called by its short name across superd (log::...); it lives in util/.
namespace superd {
namespace log = util::log;
}  // namespace superd
