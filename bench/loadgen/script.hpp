// loadgen::script: what one connection says and expects, as a list of steps.
//
// A script is a body repeated `repeat` times, then a tail that runs once. Steps:
//   send TEXT | expect-prefix TEXT | expect-regex REGEX | shutdown | expect TEXT | eof
// The body is every step before the first `shutdown`, `expect` or `eof`; in the tail, `send`
// may not follow `shutdown` (the half-close), and nothing may follow `expect` or `eof`.
// `expect-prefix` waits for as many bytes as TEXT has, compares them and consumes them;
// `expect-regex` (std::regex, ECMAScript) matches as soon as the bytes received and not yet
// consumed contain a match, and consumes them up to its end; `expect` is the whole rest of the
// stream up to EOF, exactly; `eof` reads and discards to EOF. A connection whose script ends
// without `eof` is closed by loadgen. TEXT takes C escapes (\n \r \t \\ \0 \xHH); a REGEX is
// passed to std::regex as written (which knows \n, \t, \xHH itself).
//
// The old flags map onto a script: [--send S] [shutdown unless --no-shutdown] then
// `expect S` (--expect), `expect-prefix S` + `eof` (--expect-prefix) or `eof`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace loadgen::script {

enum class Kind { send, expect_prefix, expect_regex, shutdown, expect_exact, eof };

struct Step {
  Kind kind = Kind::eof;
  std::string text;                      // bytes to send or expect; the regex's source
  std::shared_ptr<const std::regex> re;  // expect_regex only; shared, read-only across threads
};

struct Script {
  std::vector<Step> body;
  uint64_t repeat = 1;
  std::vector<Step> tail;

  // The total number of steps a connection runs, for the cursor.
  uint64_t length() const { return body.size() * repeat + tail.size(); }
  const Step& at(uint64_t i) const {
    return i < body.size() * repeat ? body[i % body.size()] : tail[i - body.size() * repeat];
  }
};

// How many unconsumed bytes an expect-regex may wait on before it is a mismatch.
inline constexpr size_t kMaxRegexBuffer = 64 * 1024;
inline constexpr uint64_t kMaxRepeat = 1000000;

// C escapes, so that `--send 'GET / HTTP/1.0\r\n\r\n'` means what it says.
std::string unescape(std::string_view s);

// Parses one step line ("send hello\n", "repeat 3", ...) into `into`. Blank lines and lines
// starting with '#' are ignored. Returns an error message, or nothing.
std::optional<std::string> add_line(Script& into, std::string_view line);

// Parses a whole script file's text; errors carry the line number.
std::optional<std::string> parse(Script& into, std::string_view text);

// Checks the body/tail order (no body step after a tail step was already fixed by add_line)
// and that something is in it. Returns an error message, or nothing.
std::optional<std::string> validate(const Script& s);

// The script the old flags describe.
Script from_legacy(const std::optional<std::string>& send, bool shutdown_after_send,
                   const std::optional<std::string>& expect, bool expect_is_prefix);

}  // namespace loadgen::script
