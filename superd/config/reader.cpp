// The TOML reader: Problem and Problems, and the TableReader that the table readers share
// (see reader.hpp). Every problem it adds carries file, line, column and the dotted key; it
// never stops at the first one, so `superd check` shows all.
#include "config/reader.hpp"

#include <toml++/toml.h>

#include "util/units.hpp"

namespace superd::config {

std::string Problem::to_string() const {
  // A problem of no file (a name given on the command line) is its message alone.
  std::string s = where.file.empty()
                      ? ""
                      : where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": ";
  if (!key.empty()) s += key + ": ";
  return s + message;
}

void Problems::add(Location where, std::string key, std::string message) {
  list_.push_back({std::move(where), std::move(key), std::move(message), {}});
}

void Problems::mark_service(size_t from, const std::string& name) {
  for (size_t i = from; i < list_.size(); ++i) list_[i].service = name;
}

std::vector<Problem> Problems::take_service_problems() {
  std::vector<Problem> taken, kept;
  for (auto& p : list_) (p.service.empty() ? kept : taken).push_back(std::move(p));
  list_ = std::move(kept);
  return taken;
}

namespace detail {
namespace {

Location loc(const std::string& file, const toml::source_region& r) {
  return {file, static_cast<uint32_t>(r.begin.line), static_cast<uint32_t>(r.begin.column)};
}

}  // namespace

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

void TableReader::finish() {
  for (auto&& [k, v] : t_) {
    std::string key(k.str());
    if (!seen_.count(key)) p_.add(loc(file_, k.source()), name(key), "unknown key");
  }
}

const toml::node* TableReader::get(const std::string& key) {
  seen_.insert(key);
  return t_.get(key);
}

Location TableReader::where(const toml::node& n) const {
  return loc(file_, n.source());
}
Location TableReader::where_table() const {
  return loc(file_, t_.source());
}

void TableReader::read_bool(const std::string& key, bool& out) {
  if (auto* n = get(key)) {
    if (auto v = n->value<bool>(); v && n->is_boolean())
      out = *v;
    else
      wrong_type(*n, key, "a boolean");
  }
}

bool TableReader::read_string(const std::string& key, std::string& out) {
  if (auto* n = get(key)) {
    if (n->is_string()) {
      out = *n->value<std::string>();
      return true;
    }
    wrong_type(*n, key, "a string");
  }
  return false;
}

std::optional<int64_t> TableReader::read_integer(const std::string& key, int64_t lo, int64_t hi) {
  auto* n = get(key);
  if (!n) return std::nullopt;
  if (!n->is_integer()) {
    wrong_type(*n, key, "an integer");
    return std::nullopt;
  }
  int64_t v = *n->value<int64_t>();
  if (v < lo || v > hi) {
    bad(*n, key, "must be in " + std::to_string(lo) + ".." + std::to_string(hi));
    return std::nullopt;
  }
  return v;
}

std::vector<std::pair<std::string, const toml::node*>> TableReader::read_strings(const std::string& key,
                                                                                 bool allow_single) {
  std::vector<std::pair<std::string, const toml::node*>> out;
  auto* n = get(key);
  if (!n) return out;
  if (allow_single && n->is_string()) {
    out.emplace_back(*n->value<std::string>(), n);
    return out;
  }
  auto* arr = n->as_array();
  if (!arr) {
    wrong_type(*n, key, "an array of strings");
    return out;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& e = *arr->get(i);
    if (!e.is_string())
      bad(e, key + "[" + std::to_string(i) + "]", "expected a string, got " + type_name(e));
    else
      out.emplace_back(*e.value<std::string>(), &e);
  }
  return out;
}

void TableReader::read_duration(const std::string& key, std::chrono::milliseconds& out) {
  if (auto* n = get(key)) {
    // Both forms are bounded by units::kMaxDuration: a longer one would wrap in the timers.
    const std::string too_long = std::string(" is too long (at most ") + std::string(units::kMaxDurationText) + ")";
    if (n->is_integer() && *n->value<int64_t>() >= 0) {
      const int64_t secs = *n->value<int64_t>();
      if (secs > std::chrono::duration_cast<std::chrono::seconds>(units::kMaxDuration).count())
        bad(*n, key, "duration " + std::to_string(secs) + too_long);
      else
        out = std::chrono::seconds(secs);
    } else if (n->is_string()) {
      units::ParseError why = units::ParseError::malformed;
      auto d = units::parse_duration(*n->value<std::string>(), &why);
      if (d)
        out = *d;
      else if (why == units::ParseError::out_of_range)
        bad(*n, key, "duration \"" + *n->value<std::string>() + "\"" + too_long);
      else
        bad(*n, key, "bad duration \"" + *n->value<std::string>() + "\" (e.g. \"30s\", \"5min\")");
    } else {
      wrong_type(*n, key, "a duration string such as \"30s\"");
    }
  }
}

std::optional<toml::table> parse_toml(std::string_view text, const std::string& file, Problems& p) {
  if (text.size() > kMaxConfigFileBytes) {
    p.add({file, 1, 1}, "", "file larger than " + std::to_string(kMaxConfigFileBytes) + " bytes");
    return std::nullopt;
  }
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    p.add(loc(file, e.source()), "", std::string(e.description()));
    return std::nullopt;
  }
}

const toml::table* sub_table(TableReader& r, const std::string& key) {
  auto* n = r.get(key);
  if (!n) return nullptr;
  if (!n->is_table()) {
    r.wrong_type(*n, key, "a table");
    return nullptr;
  }
  return n->as_table();
}

// A size key's value: "512M" / "infinity" (kInfinity), or a positive number of bytes.
std::optional<uint64_t> size_value(const toml::node& n) {
  if (n.is_string()) return units::parse_size(*n.value<std::string>());
  if (n.is_integer() && *n.value<int64_t>() > 0) return static_cast<uint64_t>(*n.value<int64_t>());
  return std::nullopt;
}

}  // namespace detail
}  // namespace superd::config
