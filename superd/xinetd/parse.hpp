// Internal to the importer: the xinetd grammar, read into raw entries (service / defaults
// blocks with their attribute lines, and inetd.conf lines) in the order xinetd reads them,
// following include and includedir. No meaning is given to attributes here; attrs.cpp does.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "xinetd/xinetd.hpp"

namespace superd::xinetd::detail {

enum class Op { set, add, remove };

struct Attr {
  std::string name;
  Op op = Op::set;
  std::vector<std::string> values;  // split on blanks, as xinetd does: '#' and quotes are plain text
  uint32_t line = 0;
  int comment_at = -1;  // index of the first value starting with '#' (a probable inline comment)
};

struct Entry {
  enum class Kind { service, defaults, inetd };
  Kind kind = Kind::service;
  std::string name;  // the service name (inetd: the service field)
  std::string file;
  uint32_t line = 0;
  std::vector<Attr> attrs;          // service / defaults
  std::vector<std::string> fields;  // inetd: the whitespace-separated fields
};

struct Parsed {
  std::vector<Entry> entries;
  std::vector<Warning> warnings;
  std::vector<std::string> errors;
};

// Parses `text` (named `file`) and, recursively, what it includes.
void parse_text(std::string_view text, const std::string& file, Parsed& out, Includes includes = Includes::read);
// Reads `path` (bounded by kMaxFileBytes) and parses it; an unreadable file is an error.
void parse_file(const std::string& path, Parsed& out);

}  // namespace superd::xinetd::detail
