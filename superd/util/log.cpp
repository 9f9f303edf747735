// Log sink: a single write(2) per line so lines from superd and from instances' stderr
// (relayed by the daemon) never interleave mid-line; the message is escaped on the way
// (append_escaped, shared with every log::Sink), so one write is always exactly one line.
#include "util/log.hpp"

#include "util/sink.hpp"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace superd::util::log {
namespace {
Level g_level = Level::info;
constexpr std::string_view kNames[] = {"debug", "info", "warning", "error"};
constexpr char kPriority[] = {'7', '6', '4', '3'};  // syslog's debug, info, warning, err

// How stderr is written: to the journal (JOURNAL_STREAM names stderr's device and inode, as
// systemd sets it), "<N>" priority prefixes so journald keeps the levels; else a UTC timestamp
// first; `plain` (SUPERD_LOG_STYLE=plain: a capsule's superd, whose lines the host stamps) neither.
enum class Style { unknown, journal, stamped, plain };
Style g_style = Style::unknown;
const Sink* g_output = nullptr;
bool g_in_output = false;  // a sink that falls back to log::write writes to stderr, not to itself

Style style() noexcept {
  if (g_style != Style::unknown) return g_style;
  g_style = Style::stamped;
  if (const char* s = ::getenv("SUPERD_LOG_STYLE"); s && std::strcmp(s, "plain") == 0) return g_style = Style::plain;
  unsigned long long dev = 0, ino = 0;
  struct stat st {};
  if (const char* js = ::getenv("JOURNAL_STREAM"); js && std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
                                                   ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev &&
                                                   st.st_ino == ino)
    g_style = Style::journal;
  return g_style;
}
// The bytes append_escaped rewrites: C0 controls, DEL, and the escape character itself.
constexpr bool needs_escape(unsigned char c) noexcept {
  return c < 0x20 || c == 0x7f || c == '\\';
}
}  // namespace

void set_level(Level l) noexcept {
  g_level = l;
}
Level level() noexcept {
  return g_level;
}

bool parse_level(std::string_view s, Level& out) noexcept {
  for (int i = 0; i < 4; ++i)
    if (s == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  return false;
}

void append_escaped(fmt::memory_buffer& out, std::string_view s) {
  constexpr char kHex[] = "0123456789abcdef";
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const char* clean = p;
    while (p < end && !needs_escape(static_cast<unsigned char>(*p))) ++p;
    out.append(clean, p);  // the clean run in one copy
    if (p == end) break;
    const auto c = static_cast<unsigned char>(*p++);
    char esc[4] = {'\\', 0, 0, 0};
    size_t n = 2;
    switch (c) {
      case '\\':
        esc[1] = '\\';
        break;
      case '\t':
        esc[1] = 't';
        break;
      case '\n':
        esc[1] = 'n';
        break;
      case '\r':
        esc[1] = 'r';
        break;
      default:
        esc[1] = 'x';
        esc[2] = kHex[c >> 4];
        esc[3] = kHex[c & 0xf];
        n = 4;
    }
    out.append(esc, esc + n);
  }
}

void set_output(const Sink* sink) noexcept {
  g_output = sink;
}

void write(Level l, std::string_view msg) noexcept {
  if (g_output && !g_in_output) {
    g_in_output = true;
    g_output->write(l, msg);
    g_in_output = false;
    return;
  }
  try {
    // Inline storage: a line under ~500 bytes is assembled without allocating.
    fmt::memory_buffer line;
    Style how = style();
    if (how == Style::journal) {
      const char prefix[] = {'<', kPriority[static_cast<int>(l)], '>'};
      line.append(prefix, prefix + 3);
    } else if (how == Style::stamped) {
      timespec ts{};
      ::clock_gettime(CLOCK_REALTIME, &ts);
      tm t{};
      ::gmtime_r(&ts.tv_sec, &t);
      char stamp[40];
      size_t n = ::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
      n += static_cast<size_t>(std::snprintf(stamp + n, sizeof stamp - n, ".%03ldZ ", ts.tv_nsec / 1000000));
      line.append(stamp, stamp + n);
    }
    std::string_view name = kNames[static_cast<int>(l)];
    line.append(name.data(), name.data() + name.size());
    line.append(std::string_view(": "));
    append_escaped(line, msg);
    line.push_back('\n');
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
  } catch (...) {
  }
}

std::string errno_text(int err) {
  const char* name = ::strerrorname_np(err);
  return fmt::format("{} ({})", name ? name : "?", std::strerror(err));
}

}  // namespace superd::util::log
