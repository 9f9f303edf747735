// Parsing loadgen scripts (see script.hpp for the language). Everything here runs before the
// clock starts; the workers only walk the parsed steps.
#include "loadgen/script.hpp"

#include <fmt/core.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace loadgen::script {

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case '0':
        out += '\0';
        break;
      case '\\':
        out += '\\';
        break;
      case 'x':
        if (i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
          out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:
        out += '\\';
        out += c;
    }
  }
  return out;
}

namespace {

bool is_tail(Kind k) {
  return k == Kind::shutdown || k == Kind::expect_exact || k == Kind::eof;
}

std::optional<std::string> push(Script& s, Step step) {
  // The repeated body ends at the first tail step; what follows runs once.
  if (s.tail.empty() && !is_tail(step.kind)) {
    s.body.push_back(std::move(step));
    return std::nullopt;
  }
  bool shut = false;
  for (const Step& t : s.tail) shut = shut || t.kind == Kind::shutdown;
  if (!s.tail.empty() && (s.tail.back().kind == Kind::expect_exact || s.tail.back().kind == Kind::eof))
    return "nothing may follow 'expect' or 'eof'";
  if (step.kind == Kind::shutdown && shut) return "'shutdown' twice";
  if (step.kind == Kind::send && shut) return "'send' after 'shutdown'";
  s.tail.push_back(std::move(step));
  return std::nullopt;
}

}  // namespace

std::optional<std::string> add_line(Script& into, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t lead = 0;
  while (lead < line.size() && (line[lead] == ' ' || line[lead] == '\t')) lead++;
  line.remove_prefix(lead);
  if (line.empty() || line[0] == '#') return std::nullopt;
  const size_t sp = line.find(' ');
  const std::string_view word = line.substr(0, sp);
  const std::string_view arg = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  const bool has_arg = sp != std::string_view::npos && !arg.empty();
  auto need_arg = [&]() -> std::optional<std::string> {
    if (!has_arg) return fmt::format("'{}' needs an argument", word);
    return std::nullopt;
  };
  auto no_arg = [&]() -> std::optional<std::string> {
    if (sp != std::string_view::npos) return fmt::format("'{}' takes no argument", word);
    return std::nullopt;
  };
  if (word == "send" || word == "expect-prefix" || word == "expect") {
    if (auto e = need_arg()) return e;
    Kind k = word == "send" ? Kind::send : word == "expect" ? Kind::expect_exact : Kind::expect_prefix;
    return push(into, Step{k, unescape(arg), nullptr});
  }
  if (word == "expect-regex") {
    if (auto e = need_arg()) return e;
    try {
      auto re = std::make_shared<const std::regex>(std::string(arg), std::regex::ECMAScript);
      return push(into, Step{Kind::expect_regex, std::string(arg), std::move(re)});
    } catch (const std::regex_error& e) {
      return fmt::format("bad regex '{}': {}", arg, e.what());
    }
  }
  if (word == "shutdown" || word == "eof") {
    if (auto e = no_arg()) return e;
    return push(into, Step{word == "eof" ? Kind::eof : Kind::shutdown, {}, nullptr});
  }
  if (word == "repeat") {
    if (auto e = need_arg()) return e;
    const std::string v(arg);
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (errno != 0 || end == v.c_str() || *end != '\0' || n == 0 || n > kMaxRepeat || v[0] == '-')
      return fmt::format("bad repeat '{}' (1..{})", v, kMaxRepeat);
    into.repeat = n;
    return std::nullopt;
  }
  return fmt::format("unknown step '{}' (send, expect-prefix, expect-regex, shutdown, expect, eof, repeat)", word);
}

std::optional<std::string> parse(Script& into, std::string_view text) {
  size_t line_no = 0;
  while (!text.empty()) {
    line_no++;
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    if (auto e = add_line(into, line)) return fmt::format("line {}: {}", line_no, *e);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

std::optional<std::string> validate(const Script& s) {
  if (s.repeat > 1 && s.body.empty()) return "'repeat' with no send or expect step to repeat";
  return std::nullopt;
}

Script from_legacy(const std::optional<std::string>& send, bool shutdown_after_send,
                   const std::optional<std::string>& expect, bool expect_is_prefix) {
  Script s;
  if (send) {
    s.body.push_back(Step{Kind::send, *send, nullptr});
    if (shutdown_after_send) s.tail.push_back(Step{Kind::shutdown, {}, nullptr});
  }
  if (expect && !expect_is_prefix) {
    s.tail.push_back(Step{Kind::expect_exact, *expect, nullptr});
    return s;
  }
  if (expect) (send ? s.tail : s.body).push_back(Step{Kind::expect_prefix, *expect, nullptr});
  s.tail.push_back(Step{Kind::eof, {}, nullptr});
  return s;
}

}  // namespace loadgen::script
