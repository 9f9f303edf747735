// Template and instance names, and the expansion of an instance's specifiers (template.hpp).
#include "config/template.hpp"

#include <cctype>
#include <cstdio>

namespace superd::config {

std::optional<UnitName> split_unit_name(std::string_view name) {
  size_t at = name.find('@');
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  return UnitName{std::string(name.substr(0, at)), std::string(name.substr(at + 1))};
}

std::string instance_name_error(std::string_view instance) {
  if (instance.empty()) return "the instance name is empty";
  if (instance.size() > kMaxInstanceName)
    return "the instance name is longer than " + std::to_string(kMaxInstanceName) + " characters";
  if (instance.find('/') != std::string_view::npos) return "the instance name contains \"/\"";
  if (instance.find("..") != std::string_view::npos) return "the instance name contains \"..\"";
  for (char c : instance) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '_' || c == '.' || c == '\\' || c == '-')
      continue;
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
    std::string shown = std::isprint(static_cast<unsigned char>(c)) ? std::string("'") + c + "'" : hex;
    return "the instance name contains " + shown + " (write it as " + hex + ", as systemd-escape does)";
  }
  return {};
}

std::string unescape_instance(std::string_view s) {
  auto hex = [](char c) {
    return std::isdigit(static_cast<unsigned char>(c))    ? c - '0'
           : std::isxdigit(static_cast<unsigned char>(c)) ? (std::tolower(static_cast<unsigned char>(c)) - 'a' + 10)
                                                          : -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '-') {
      out += '/';
    } else if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x' && hex(s[i + 2]) >= 0 && hex(s[i + 3]) >= 0) {
      out += static_cast<char>(hex(s[i + 2]) * 16 + hex(s[i + 3]));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string expand_instance(std::string_view s, const UnitName& name) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[i + 1];
    if (c == 'i') {
      out += name.instance;
    } else if (c == 'I') {
      out += unescape_instance(name.instance);
    } else if (c == 'p') {
      out += name.prefix;
    } else if (c == 'n') {
      out += name.prefix + "@" + name.instance;
    } else {
      out += s[i];  // "%%", "%c" and the rest: the later stages' business
      out += c;
    }
    ++i;
  }
  return out;
}

}  // namespace superd::config
