// Log sink: a single write(2) per line so lines from superd and from instances' stderr
// (relayed by the daemon) never interleave mid-line.
#include "util/log.hpp"

#include <unistd.h>

#include <string>

namespace superd::log {
namespace {
Level g_level = Level::info;
constexpr std::string_view kNames[] = {"debug", "info", "warning", "error"};
}  // namespace

void set_level(Level l) noexcept { g_level = l; }
Level level() noexcept { return g_level; }

bool parse_level(std::string_view s, Level& out) noexcept {
  for (int i = 0; i < 4; ++i)
    if (s == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  return false;
}

void write(Level l, std::string_view msg) noexcept {
  try {
    std::string line;
    line.reserve(msg.size() + 10);
    line.append(kNames[static_cast<int>(l)]).append(": ").append(msg).push_back('\n');
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
  } catch (...) {
  }
}

}  // namespace superd::log
