// The xinetd / inetd.conf importer: turns xinetd.conf (with its defaults{}, include and
// includedir) and inetd.conf lines into superd service files, one per service, plus a warning
// for everything that does not carry over or that xinetd itself would treat oddly.
// Pure over text: the only I/O is reading included files and the lookups xinetd also does at
// load time (/etc/services, addresses, group lists), done once here so the output is static.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace superd::xinetd {

// Input bounds: a file larger than this is refused, includes nest at most this deep, and at
// most this many files are read in all (includedir included).
inline constexpr size_t kMaxFileBytes = 1u << 20;
inline constexpr int kMaxIncludeDepth = 8;
inline constexpr size_t kMaxFiles = 4096;

struct Warning {
  std::string file;
  uint32_t line = 0;
  std::string attribute;  // the xinetd attribute, or the service name for whole-service warnings
  std::string message;
  std::string to_string() const;  // "FILE:LINE: ATTRIBUTE: warning: MESSAGE"
};

struct ServiceFile {
  std::string name;         // file stem: the xinetd id (or the service name)
  std::string toml;         // complete service file text, parseable by config::parse_service
  std::string origin_file;  // xinetd file and line of the `service NAME` line
  uint32_t origin_line = 0;
  std::vector<uint32_t> line_origin;  // for each TOML line (0-based), the xinetd source line (0: none)
  bool disabled = false;
};

struct Result {
  std::vector<ServiceFile> services;
  std::vector<Warning> warnings;
  std::vector<std::string> errors;  // unreadable files ("FILE: why")
};

// Reads `path` and everything it includes from disk.
Result convert_file(const std::string& path);
// Whether include and includedir lines are read from disk. `skip` (the fuzz target, which must
// not wander the file system) reads nothing and warns on each such line instead.
enum class Includes { read, skip };
// Converts `text` as if read from `file` (include/includedir are still read from disk, unless
// `includes` says skip).
Result convert_text(std::string_view text, const std::string& file, Includes includes = Includes::read);

}  // namespace superd::xinetd
