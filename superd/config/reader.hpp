// Internal to superd/config: the TOML reader the table readers share. A TableReader reads one
// table: it knows which keys were asked for (finish() reports every other key as unknown), and
// every problem it adds names the file, line, column and dotted key ("service.exec[1]").
//
// The header names toml++'s node and table only by reference or pointer, through the forward
// declarations below: only superd/config/*.cpp include toml++ itself, no header does. They
// follow toml++ 3.x's `toml::v3` namespace: another major version fails to compile here
// rather than misbehave.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace toml {
inline namespace v3 {
class node;
class table;
}  // namespace v3
}  // namespace toml

namespace superd::config::detail {

// "a string", "an integer", ...: the type of `n` for "expected X, got Y".
std::string type_name(const toml::node& n);

class TableReader {
 public:
  // `prefix` names the table in keys ("socket", "service.limits"); "" for the top level.
  TableReader(const toml::table& t, std::string prefix, const std::string& file, Problems& p)
      : t_(t), prefix_(std::move(prefix)), file_(file), p_(p) {}

  // Reports keys nobody asked for; call last.
  void finish();

  // The key's node, or nullptr; marks the key as known.
  const toml::node* get(const std::string& key);
  std::string name(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  Location where(const toml::node& n) const;
  Location where_table() const;  // the table itself, e.g. its [header]
  void bad(const toml::node& n, const std::string& key, std::string msg) {
    p_.add(where(n), name(key), std::move(msg));
  }
  void wrong_type(const toml::node& n, const std::string& key, const char* want) {
    bad(n, key, std::string("expected ") + want + ", got " + type_name(n));
  }

  // Each read_* leaves `out` as it is when the key is absent or its value is bad (a problem).
  void read_bool(const std::string& key, bool& out);
  bool read_string(const std::string& key, std::string& out);  // true: the key holds a string
  // An integer in lo..hi.
  template <typename Int>
  void read_int(const std::string& key, Int& out, int64_t lo, int64_t hi) {
    if (auto v = read_integer(key, lo, hi)) out = static_cast<Int>(*v);
  }
  std::optional<int64_t> read_integer(const std::string& key, int64_t lo, int64_t hi);
  // An array of strings (or, if `allow_single`, one string); each element with its node for
  // locations. Elements that are not strings are reported and left out.
  std::vector<std::pair<std::string, const toml::node*>> read_strings(const std::string& key, bool allow_single);
  // Seconds as an integer, or a string such as "30s", at most units::kMaxDuration.
  void read_duration(const std::string& key, std::chrono::milliseconds& out);

  const std::string& file() const { return file_; }
  Problems& problems() { return p_; }

 private:
  const toml::table& t_;
  std::string prefix_;
  const std::string& file_;
  Problems& p_;
  std::set<std::string> seen_;
};

// The document, or nullopt after adding the problem (too large, or the TOML syntax error at its
// position).
std::optional<toml::table> parse_toml(std::string_view text, const std::string& file, Problems& p);
// The sub-table `key`, or nullptr (absent, or not a table: reported).
const toml::table* sub_table(TableReader& r, const std::string& key);
// A size key's value: "512M" / "infinity" (units::kInfinity), or a positive number of bytes.
std::optional<uint64_t> size_value(const toml::node& n);

}  // namespace superd::config::detail
