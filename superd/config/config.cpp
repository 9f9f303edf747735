// TOML -> validated structs. Strategy: each table is read by a `TableReader` that knows its
// keys; every key it is not asked about is reported as unknown, every wrong type names the key
// and the expected type. Parsing never stops at the first problem, so `superd check` shows all.
#include "config/config.hpp"

#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "admission/access_times.hpp"
#include "sandbox/seccomp.hpp"
#include "uid_pool/userdb.hpp"
#include "util/sink.hpp"
#include "util/units.hpp"

namespace superd::config {

std::string Problem::to_string() const {
  std::string s = where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": ";
  if (!key.empty()) s += key + ": ";
  return s + message;
}

void Problems::add(Location where, std::string key, std::string message) {
  list_.push_back({std::move(where), std::move(key), std::move(message)});
}

std::string expand_specifiers(std::string_view s, const std::string& name, const std::string* serial) {
  // %n the service name, %p the template prefix (before '@'), %i the instance (after '@'),
  // %c the per-connection serial; %% a literal '%'. Unknown specifiers are kept as written.
  std::string prefix = name.substr(0, name.find('@'));
  std::string instance = name.find('@') == std::string::npos ? "" : name.substr(name.find('@') + 1);
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    char c = s[++i];
    if (c == 'n') out += name;
    else if (c == 'p') out += prefix;
    else if (c == 'i') out += instance;
    else if (c == 'c' && serial) out += *serial;
    else if (c == '%') out.push_back('%');
    else out.push_back('%'), out.push_back(c);
  }
  return out;
}

namespace {

Location loc(const std::string& file, const toml::source_region& r) {
  return {file, static_cast<uint32_t>(r.begin.line), static_cast<uint32_t>(r.begin.column)};
}

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

class TableReader {
 public:
  TableReader(const toml::table& t, std::string prefix, const std::string& file, Problems& p)
      : t_(t), prefix_(std::move(prefix)), file_(file), p_(p) {}

  // Reports keys nobody asked for; call last.
  void finish() {
    for (auto&& [k, v] : t_) {
      std::string key(k.str());
      if (!seen_.count(key)) p_.add(loc(file_, k.source()), name(key), "unknown key");
    }
  }

  const toml::node* get(const std::string& key) {
    seen_.insert(key);
    return t_.get(key);
  }
  std::string name(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  Location where(const toml::node& n) const { return loc(file_, n.source()); }
  Location where_table() const { return loc(file_, t_.source()); }
  void bad(const toml::node& n, const std::string& key, std::string msg) { p_.add(where(n), name(key), std::move(msg)); }
  void wrong_type(const toml::node& n, const std::string& key, const char* want) {
    bad(n, key, std::string("expected ") + want + ", got " + type_name(n));
  }

  void read_bool(const std::string& key, bool& out) {
    if (auto* n = get(key)) {
      if (auto v = n->value<bool>(); v && n->is_boolean()) out = *v;
      else wrong_type(*n, key, "a boolean");
    }
  }
  bool read_string(const std::string& key, std::string& out) {
    if (auto* n = get(key)) {
      if (n->is_string()) {
        out = *n->value<std::string>();
        return true;
      }
      wrong_type(*n, key, "a string");
    }
    return false;
  }
  template <typename Int>
  void read_int(const std::string& key, Int& out, int64_t lo, int64_t hi) {
    if (auto* n = get(key)) {
      if (!n->is_integer()) return wrong_type(*n, key, "an integer");
      int64_t v = *n->value<int64_t>();
      if (v < lo || v > hi) return bad(*n, key, "must be in " + std::to_string(lo) + ".." + std::to_string(hi));
      out = static_cast<Int>(v);
    }
  }
  // An array of strings; each element with its node for locations.
  std::vector<std::pair<std::string, const toml::node*>> read_strings(const std::string& key, bool allow_single) {
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
      if (!e.is_string()) bad(e, key + "[" + std::to_string(i) + "]", "expected a string, got " + type_name(e));
      else out.emplace_back(*e.value<std::string>(), &e);
    }
    return out;
  }
  void read_duration(const std::string& key, std::chrono::milliseconds& out) {
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
        if (d) out = *d;
        else if (why == units::ParseError::out_of_range) bad(*n, key, "duration \"" + *n->value<std::string>() + "\"" + too_long);
        else bad(*n, key, "bad duration \"" + *n->value<std::string>() + "\" (e.g. \"30s\", \"5min\")");
      } else {
        wrong_type(*n, key, "a duration string such as \"30s\"");
      }
    }
  }

  const std::string& file() const { return file_; }
  Problems& problems() { return p_; }

 private:
  const toml::table& t_;
  std::string prefix_;
  const std::string& file_;
  Problems& p_;
  std::set<std::string> seen_;
};

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

std::optional<uid_t> resolve_user(const std::string& s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), ::isdigit)) return static_cast<uid_t>(std::stoul(s));
  if (passwd* pw = getpwnam(s.c_str())) return pw->pw_uid;
  return std::nullopt;
}
std::optional<gid_t> resolve_group(const std::string& s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), ::isdigit)) return static_cast<gid_t>(std::stoul(s));
  if (group* gr = getgrnam(s.c_str())) return gr->gr_gid;
  return std::nullopt;
}

void read_socket(TableReader& r, SocketConfig& s) {
  for (auto& [text, node] : r.read_strings("listen", true)) {
    std::string why;
    if (auto spec = net::parse_listen(text, why)) s.listen.push_back({*spec, r.where(*node)});
    else r.bad(*node, "listen", why);
  }
  for (auto& [text, node] : r.read_strings("listen_datagram", true)) {
    std::string why;
    auto spec = net::parse_listen(text, why);
    if (spec && spec->is_unix()) r.bad(*node, "listen_datagram", "\"" + text + "\": a datagram listener takes PORT, ADDR:PORT or [V6]:PORT");
    else if (spec) s.listen.push_back({*spec, r.where(*node), true});
    else r.bad(*node, "listen_datagram", why);
  }
  r.read_bool("accept", s.accept);
  r.read_int("max_connections", s.limits.max_connections, 1, kMaxConnectionsCap);
  r.read_int("max_connections_per_source", s.limits.max_per_source, 0, kMaxConnectionsCap);
  for (const char* key : {"allow", "deny"}) {
    auto& list = std::string(key) == "allow" ? s.limits.allow : s.limits.deny;
    for (auto& [text, node] : r.read_strings(key, false)) {
      std::string why;
      if (auto c = net::parse_cidr(text, why)) list.push_back(*c);
      else r.bad(*node, key, why);
    }
  }
  r.read_int("backlog", s.backlog, 1, 65535);
  r.read_bool("reuse_port", s.reuse_port);
  if (auto* n = r.get("socket_mode")) {
    // TOML has no octal-looking strings problem: accept 0o660 (integer) or "0660" (string).
    if (n->is_integer() && *n->value<int64_t>() >= 0 && *n->value<int64_t>() <= 07777) {
      s.socket_mode = static_cast<mode_t>(*n->value<int64_t>());
    } else if (n->is_string()) {
      const std::string v = *n->value<std::string>();
      char* end = nullptr;
      unsigned long m = std::strtoul(v.c_str(), &end, 8);
      if (v.empty() || *end || m > 07777) r.bad(*n, "socket_mode", "bad mode \"" + v + "\" (octal, e.g. \"0660\")");
      else s.socket_mode = static_cast<mode_t>(m);
    } else {
      r.wrong_type(*n, "socket_mode", "an octal string such as \"0660\"");
    }
  }
  std::string v6;
  if (r.read_string("bind_ipv6_only", v6)) {
    if (v6 == "both") s.bind_ipv6_only = BindIpv6Only::both;
    else if (v6 == "ipv6-only") s.bind_ipv6_only = BindIpv6Only::ipv6_only;
    else if (v6 == "default") s.bind_ipv6_only = BindIpv6Only::default_;
    else r.bad(*r.get("bind_ipv6_only"), "bind_ipv6_only", "expected \"both\", \"ipv6-only\" or \"default\"");
  }
  r.read_bool("no_delay", s.no_delay);
  r.read_bool("keep_alive", s.keep_alive);
  r.read_int("max_connection_rate", s.max_connection_rate, 0, kMaxConnectionsCap);
  r.read_duration("connection_rate_interval", s.connection_rate_interval);
  if (auto* n = r.get("connection_rate_interval"); n && s.connection_rate_interval.count() == 0)
    r.bad(*n, "connection_rate_interval", "must be longer than 0");
  std::string action;
  if (r.read_string("connection_rate_action", action)) {
    if (action == "defer") s.connection_rate_action = RateAction::defer;
    else if (action == "refuse") s.connection_rate_action = RateAction::refuse;
    else r.bad(*r.get("connection_rate_action"), "connection_rate_action", "expected \"defer\" or \"refuse\"");
  }
  r.read_int("datagram_reply_rate", s.datagram_reply_rate, 0, kMaxConnectionsCap);
  r.read_int("datagram_reply_rate_per_source", s.datagram_reply_rate_per_source, 0, kMaxConnectionsCap);
  for (auto [key, interval] : {std::pair{"datagram_reply_interval", &s.datagram_reply_interval},
                               std::pair{"datagram_reply_interval_per_source", &s.datagram_reply_interval_per_source}}) {
    r.read_duration(key, *interval);
    if (auto* n = r.get(key); n && interval->count() == 0) r.bad(*n, key, "must be longer than 0");
  }
  std::vector<std::string> times;
  for (auto& [text, node] : r.read_strings("access_times", true)) times.push_back(text);
  if (auto* n = r.get("access_times")) {
    std::string why;
    if (auto at = admission::AccessTimes::parse(times, why)) s.access_times = std::move(*at);
    else r.bad(*n, "access_times", why);
  }
  for (auto [key, banner] : {std::pair{"banner", &s.banner}, std::pair{"banner_success", &s.banner_success},
                             std::pair{"banner_fail", &s.banner_fail}}) {
    if (!r.read_string(key, banner->path)) continue;
    const toml::node& at = *r.get(key);
    std::ifstream in(banner->path, std::ios::binary);
    if (banner->path.empty() || banner->path.front() != '/') {
      r.bad(at, key, "\"" + banner->path + "\" must be an absolute path");
    } else if (!in) {
      r.bad(at, key, "\"" + banner->path + "\": " + std::strerror(errno));
    } else {
      std::string text(kMaxBannerBytes + 1, '\0');
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<size_t>(in.gcount()));
      if (text.size() > kMaxBannerBytes)
        r.bad(at, key, "\"" + banner->path + "\" is larger than " + std::to_string(kMaxBannerBytes) + " bytes");
      banner->text = std::move(text);
    }
  }
  std::string user, group;
  if (r.read_string("socket_user", user)) {
    if (!(s.socket_user = resolve_user(user))) r.bad(*r.get("socket_user"), "socket_user", "no such user \"" + user + "\"");
  }
  if (r.read_string("socket_group", group)) {
    if (!(s.socket_group = resolve_group(group)))
      r.bad(*r.get("socket_group"), "socket_group", "no such group \"" + group + "\"");
  }
  r.finish();
}

struct LimitName {
  const char* name;
  int resource;
  bool is_time;
};
constexpr LimitName kLimits[] = {
    {"nofile", RLIMIT_NOFILE, false}, {"nproc", RLIMIT_NPROC, false}, {"as", RLIMIT_AS, false},
    {"cpu", RLIMIT_CPU, true},        {"fsize", RLIMIT_FSIZE, false}, {"core", RLIMIT_CORE, false},
    {"stack", RLIMIT_STACK, false},   {"data", RLIMIT_DATA, false},   {"memlock", RLIMIT_MEMLOCK, false},
    {"rss", RLIMIT_RSS, false},  // accepted for xinetd's rlimit_rss; Linux does not enforce it
};

void read_limits(const toml::table& t, TableReader& parent, std::vector<Rlimit>& out) {
  TableReader r(t, parent.name("limits"), parent.file(), parent.problems());
  for (const LimitName& l : kLimits) {
    const toml::node* n = r.get(l.name);
    if (!n) continue;
    std::optional<uint64_t> v;
    if (n->is_integer() && *n->value<int64_t>() >= 0) {
      v = static_cast<uint64_t>(*n->value<int64_t>());
    } else if (n->is_string()) {
      const std::string s = *n->value<std::string>();
      units::ParseError why = units::ParseError::malformed;
      if (s == "infinity") v = units::kInfinity;
      else if (l.is_time) {
        if (auto d = units::parse_duration(s, &why)) v = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(*d).count());
      } else {
        v = units::parse_size(s, &why);
      }
      if (!v && why == units::ParseError::out_of_range)
        r.bad(*n, l.name, "value \"" + s + "\" is too large (at most " + (l.is_time ? std::string(units::kMaxDurationText) + " or \"infinity\")" : "2^64-1 bytes or \"infinity\")"));
      else if (!v) r.bad(*n, l.name, "bad value \"" + s + "\"" + (l.is_time ? " (a duration, e.g. \"30s\")" : " (a size, e.g. \"512M\")"));
    } else {
      r.wrong_type(*n, l.name, "an integer or a string");
    }
    if (v) out.push_back({l.resource, *v == units::kInfinity ? RLIM_INFINITY : static_cast<rlim_t>(*v)});
  }
  r.finish();
}

bool valid_relative_dir(const std::string& d) {
  if (d.empty() || d.front() == '/' || d.size() > 255) return false;
  std::string_view v(d);
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find('/', start);
    std::string_view part = v.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return true;
}

bool valid_absolute_path(std::string_view p) {
  return !p.empty() && p.front() == '/' && p.find("/../") == std::string_view::npos &&
         !(p.size() >= 3 && p.substr(p.size() - 3) == "/..") && p.find('\0') == std::string_view::npos;
}

std::optional<mode_t> parse_mode(TableReader& r, const std::string& key, mode_t max) {
  auto* n = r.get(key);
  if (!n) return std::nullopt;
  std::string v = n->is_string() ? *n->value<std::string>() : "";
  char* end = nullptr;
  unsigned long m = std::strtoul(v.c_str(), &end, 8);
  if (v.empty() || *end || m > max) {
    r.bad(*n, key, "expected an octal string such as \"0750\"");
    return std::nullopt;
  }
  return static_cast<mode_t>(m);
}

void read_dirs(TableReader& r, const std::string& key, const std::string& service, ExecDirs& out, bool runtime) {
  for (auto& [name, node] : r.read_strings(key, true)) {
    std::string expanded = expand_specifiers(name, service);
    if (runtime && name.find("%c") != std::string::npos)
      r.bad(*node, key, "\"%c\" is not allowed here: the runtime directory is already private to each instance");
    else if (!valid_relative_dir(expanded))
      r.bad(*node, key, "\"" + name + "\" must be a relative path without \"..\" or \".\" components");
    else
      out.names.push_back(expanded);
  }
  if (auto m = parse_mode(r, key + "_mode", 07777)) out.mode = *m;
}

void read_paths(TableReader& r, const std::string& key, std::vector<Path>& out) {
  for (auto& [text, node] : r.read_strings(key, true)) {
    Path p;
    p.optional = !text.empty() && text.front() == '-';
    p.path = p.optional ? text.substr(1) : text;
    if (!valid_absolute_path(p.path)) r.bad(*node, key, "\"" + text + "\" must be an absolute path without \"..\"");
    else out.push_back(p);
  }
}

void read_binds(TableReader& r, const std::string& key, std::vector<BindPath>& out) {
  for (auto& [text, node] : r.read_strings(key, true)) {
    BindPath b;
    b.optional = !text.empty() && text.front() == '-';
    std::string v = b.optional ? text.substr(1) : text;
    auto colon = v.find(':');
    b.source = v.substr(0, colon);
    b.target = colon == std::string::npos ? b.source : v.substr(colon + 1);
    if (!valid_absolute_path(b.source) || !valid_absolute_path(b.target))
      r.bad(*node, key, "\"" + text + "\": expected \"/source[:/target]\", both absolute, without \"..\"");
    else out.push_back(b);
  }
}

void read_caps(TableReader& r, const std::string& key, std::vector<int>& out) {
  for (auto& [name, node] : r.read_strings(key, true)) {
    std::string lower;
    for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (lower.rfind("cap_", 0) != 0) lower = "cap_" + lower;
    cap_value_t v;
    if (cap_from_name(lower.c_str(), &v) != 0) r.bad(*node, key, "unknown capability \"" + name + "\"");
    else out.push_back(v);
  }
}

// A size key's value: "512M" / "infinity" (kInfinity), or a positive number of bytes.
std::optional<uint64_t> size_value(const toml::node& n) {
  if (n.is_string()) return units::parse_size(*n.value<std::string>());
  if (n.is_integer() && *n.value<int64_t>() > 0) return static_cast<uint64_t>(*n.value<int64_t>());
  return std::nullopt;
}

void read_sandbox(TableReader& r, ServiceConfig& svc, const std::string& name) {
  SandboxConfig& sb = svc.sandbox;
  r.read_bool("sandbox", sb.enabled);
  if (!svc.dynamic_user || !sb.enabled) {
    // A static user gets no implied sandbox, as in systemd; every knob can still be turned on.
    sb.protect_system = ProtectSystem::no;
    sb.protect_home = ProtectHome::no;
    sb.private_tmp = false;
    sb.private_ipc = false;
    sb.no_new_privileges = false;
    sb.seccomp.restrict_suid_sgid = false;
    sb.seccomp.default_deny_list = false;
    sb.seccomp.restrict_address_families.clear();
    sb.restrict_abstract_sockets = false;
    sb.restrict_signals = false;
  }
  if (auto* n = r.get("protect_system")) {
    std::string v = n->is_string() ? *n->value<std::string>() : n->is_boolean() ? (*n->value<bool>() ? "true" : "false") : "?";
    if (v == "strict") sb.protect_system = ProtectSystem::strict;
    else if (v == "full") sb.protect_system = ProtectSystem::full;
    else if (v == "true" || v == "yes") sb.protect_system = ProtectSystem::yes;
    else if (v == "false" || v == "no") sb.protect_system = ProtectSystem::no;
    else r.bad(*n, "protect_system", "expected \"strict\", \"full\", true or false");
  }
  if (auto* n = r.get("protect_home")) {
    std::string v = n->is_string() ? *n->value<std::string>() : n->is_boolean() ? (*n->value<bool>() ? "true" : "false") : "?";
    if (v == "read-only") sb.protect_home = ProtectHome::read_only;
    else if (v == "tmpfs") sb.protect_home = ProtectHome::tmpfs;
    else if (v == "true" || v == "yes") sb.protect_home = ProtectHome::yes;
    else if (v == "false" || v == "no") sb.protect_home = ProtectHome::no;
    else r.bad(*n, "protect_home", "expected \"read-only\", \"tmpfs\", true or false");
  }
  r.read_bool("private_tmp", sb.private_tmp);
  if (auto* n = r.get("private_tmp_size")) {
    std::optional<uint64_t> v = size_value(*n);
    if (!v || *v < 4096 || *v == units::kInfinity)
      r.bad(*n, "private_tmp_size", "expected a size of at least 4K, e.g. \"64M\"");
    else
      sb.private_tmp_size = *v;
  }
  r.read_bool("private_devices", sb.private_devices);
  r.read_bool("private_network", sb.private_network);
  r.read_bool("private_ipc", sb.private_ipc);
  read_paths(r, "read_write_paths", sb.read_write_paths);
  read_paths(r, "read_only_paths", sb.read_only_paths);
  read_paths(r, "inaccessible_paths", sb.inaccessible_paths);
  read_binds(r, "bind_paths", sb.bind_paths);
  read_binds(r, "bind_read_only_paths", sb.bind_read_only_paths);
  read_dirs(r, "state_directory", name, sb.state, false);
  read_dirs(r, "cache_directory", name, sb.cache, false);
  read_dirs(r, "logs_directory", name, sb.logs, false);
  read_dirs(r, "runtime_directory", name, sb.runtime, true);
  if (auto* n = r.get("no_new_privileges")) {
    bool v = sb.no_new_privileges;
    r.read_bool("no_new_privileges", v);
    if (!v && svc.dynamic_user && sb.enabled)
      r.bad(*n, "no_new_privileges", "cannot be false with dynamic_user = true (unless sandbox = false)");
    else sb.no_new_privileges = v;
  }
  if (r.get("capability_bounding_set")) read_caps(r, "capability_bounding_set", sb.capability_bounding_set);
  if (auto* n = r.get("ambient_capabilities")) {
    read_caps(r, "ambient_capabilities", sb.ambient_capabilities);
    for (int c : sb.ambient_capabilities)
      if (std::find(sb.capability_bounding_set.begin(), sb.capability_bounding_set.end(), c) ==
          sb.capability_bounding_set.end()) {
        char* cn = cap_to_name(c);
        r.bad(*n, "ambient_capabilities", std::string(cn ? cn : "?") + " is not in capability_bounding_set");
        cap_free(cn);
      }
  }
  seccomp::Settings& sc = sb.seccomp;
  r.read_bool("restrict_suid_sgid", sc.restrict_suid_sgid);
  for (auto& [v, node] : r.read_strings("system_call_filter", true)) sc.system_call_filter.push_back(v);
  if (auto* n = r.get("system_call_error_number")) {
    if (n->is_integer()) sc.system_call_error_number = std::to_string(*n->value<int64_t>());
    else if (n->is_string()) sc.system_call_error_number = *n->value<std::string>();
    else r.wrong_type(*n, "system_call_error_number", "an errno name such as \"EPERM\" or a number");
  }
  std::vector<std::string> architectures;
  for (auto& [v, node] : r.read_strings("system_call_architectures", true)) architectures.push_back(v);
  if (!architectures.empty()) sc.system_call_architectures = architectures;  // else the default, native
  if (r.get("restrict_address_families")) {
    sc.restrict_address_families.clear();  // the key replaces the default
    for (auto& [v, node] : r.read_strings("restrict_address_families", true)) sc.restrict_address_families.push_back(v);
  } else if (!sc.restrict_address_families.empty()) {
    // The default cannot hold where socketcall() hides the family (system_call_architectures
    // with "x86"): there it is dropped, as an explicit setting would be refused.
    seccomp::Settings probe;
    probe.system_call_architectures = sc.system_call_architectures;
    probe.restrict_address_families = sc.restrict_address_families;
    std::string why;
    if (!seccomp::validate(probe, why)) sc.restrict_address_families.clear();
  }
  r.read_bool("restrict_abstract_sockets", sb.restrict_abstract_sockets);
  r.read_bool("restrict_signals", sb.restrict_signals);
  // Names are checked now, so a typo is a config error naming its key, not a start-up failure:
  // each key alone, as validate() stops at the first bad entry.
  struct Check {
    const char* key;
    seccomp::Settings st;
  };
  std::vector<Check> checks;
  checks.push_back({"system_call_filter", {}});
  checks.back().st.system_call_filter = sc.system_call_filter;
  checks.push_back({"system_call_error_number", {}});
  checks.back().st.system_call_error_number = sc.system_call_error_number;
  checks.push_back({"system_call_architectures", {}});
  checks.back().st.system_call_architectures = sc.system_call_architectures;
  checks.push_back({"restrict_address_families", {}});
  checks.back().st.restrict_address_families = sc.restrict_address_families;
  for (Check& c : checks) {
    std::string why;
    const toml::node* at = r.get(c.key);
    if (!seccomp::validate(c.st, why)) at ? r.bad(*at, c.key, why) : r.problems().add({r.file(), 1, 1}, r.name(c.key), why);
  }
  // No filter at all only when nothing asks for one (a static user, or sandbox = false, with
  // none of the keys above).
  sb.filter_syscalls = sc.default_deny_list || !sc.system_call_filter.empty() ||
                       !sc.restrict_address_families.empty() || sc.restrict_suid_sgid || !architectures.empty();
}

bool valid_env_name(std::string_view k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

uint32_t read_log_fields(TableReader& r, const std::string& key, uint32_t allowed, uint32_t dflt) {
  static const std::pair<const char*, uint32_t> kFields[] = {
      {"PID", kLogPid},           {"HOST", kLogHost},       {"USERID", kLogUserid}, {"EXIT", kLogExit},
      {"DURATION", kLogDuration}, {"TRAFFIC", kLogTraffic}, {"ATTEMPT", kLogAttempt}};
  if (!r.get(key)) return dflt;
  uint32_t mask = 0;
  for (auto& [name, node] : r.read_strings(key, false)) {
    uint32_t bit = 0;
    for (auto& [n, b] : kFields)
      if (name == n) bit = b;
    if (!(bit & allowed)) {
      std::string list;
      for (auto& [n, b] : kFields)
        if (b & allowed) list += (list.empty() ? "" : ", ") + std::string(n);
      r.bad(*node, key, "unknown field \"" + name + "\" (expected " + list + ")");
    }
    mask |= bit;
  }
  return mask;
}

// A user or group given as a name or a number (TOML string or integer).
bool read_id(TableReader& r, const std::string& key, std::string& out) {
  const toml::node* n = r.get(key);
  if (n && n->is_integer() && *n->value<int64_t>() >= 0 && *n->value<int64_t>() < 4294967295LL) {
    out = std::to_string(*n->value<int64_t>());
    return true;
  }
  if (n && !n->is_string()) {
    r.wrong_type(*n, key, "a name or a number");
    return false;
  }
  return r.read_string(key, out);
}

void read_identity(TableReader& r, ServiceConfig& s) {
  std::string user, group;
  bool has_user = read_id(r, "user", user), has_group = read_id(r, "group", group);
  std::vector<std::pair<std::string, const toml::node*>> groups;
  if (auto* n = r.get("supplementary_groups")) {
    if (auto* a = n->as_array()) {
      for (size_t i = 0; i < a->size(); ++i) {
        const toml::node& e = *a->get(i);
        if (e.is_string()) groups.emplace_back(*e.value<std::string>(), &e);
        else if (e.is_integer() && *e.value<int64_t>() >= 0) groups.emplace_back(std::to_string(*e.value<int64_t>()), &e);
        else r.bad(e, "supplementary_groups[" + std::to_string(i) + "]", "expected a group name or number");
      }
    } else {
      r.wrong_type(*n, "supplementary_groups", "an array of group names or numbers");
    }
  }
  if (s.dynamic_user) {
    for (const char* key : {"user", "group", "supplementary_groups"})
      if (auto* n = r.get(key)) r.bad(*n, key, "needs dynamic_user = false (a dynamic user has no fixed identity)");
    return;
  }
  if (!has_user) {
    // Never a silent root: a static identity is named.
    if (auto* n = r.get("dynamic_user"); n && !r.get("user")) r.bad(*n, "user", "dynamic_user = false needs user = \"NAME\"");
    return;
  }
  s.user = user;
  if (passwd* pw = getpwnam(user.c_str())) {
    s.uid = pw->pw_uid;
    s.gid = pw->pw_gid;
    s.home = pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/";
  } else if (auto uid = resolve_user(user)) {
    s.uid = *uid;
    s.gid = *uid;
  } else {
    return r.bad(*r.get("user"), "user", "no such user \"" + user + "\"");
  }
  if (has_group) {
    if (auto gid = resolve_group(group)) s.gid = *gid;
    else r.bad(*r.get("group"), "group", "no such group \"" + group + "\"");
  }
  for (auto& [g, node] : groups) {
    if (auto gid = resolve_group(g)) s.supplementary_groups.push_back(*gid);
    else r.bad(*node, "supplementary_groups", "no such group \"" + g + "\"");
  }
}

// memory_max = "512M", tasks_max = 64, cpu_weight = 100 (1..10000), as systemd's directives.
void read_cgroup_bounds(TableReader& r, ServiceConfig& s) {
  if (auto* n = r.get("memory_max")) {
    std::optional<uint64_t> v = size_value(*n);
    if (!v) r.bad(*n, "memory_max", "expected a size such as \"512M\" or \"infinity\"");
    else s.memory_max = v;
  }
  if (auto* n = r.get("tasks_max")) {
    if (n->is_integer() && *n->value<int64_t>() > 0) s.tasks_max = static_cast<uint64_t>(*n->value<int64_t>());
    else if (n->is_string() && *n->value<std::string>() == "infinity") s.tasks_max = units::kInfinity;
    else r.bad(*n, "tasks_max", "expected a positive integer or \"infinity\"");
  }
  if (auto* n = r.get("cpu_weight")) {
    if (n->is_integer() && *n->value<int64_t>() >= 1 && *n->value<int64_t>() <= 10000)
      s.cpu_weight = static_cast<uint32_t>(*n->value<int64_t>());
    else r.bad(*n, "cpu_weight", "expected an integer from 1 to 10000");
  }
}

// "echo, discard, daytime, chargen or time", from inloop's one list.
std::string internal_names() {
  std::string out;
  for (size_t i = 0; i < inloop::kInternalNames.size(); ++i)
    out += std::string(i == 0 ? "" : i + 1 == inloop::kInternalNames.size() ? " or " : ", ") +
           inloop::kInternalNames[i].second;
  return out;
}

void read_service(TableReader& r, ServiceConfig& s, const std::string& name) {
  read_cgroup_bounds(r, s);
  auto exec = r.read_strings("exec", false);
  for (auto& e : exec) s.exec.push_back(e.first);
  if (!s.exec.empty() && s.exec.front().size() > 1 && s.exec.front().front() == '@') {
    // systemd's "@": the program, then argv starting with argv[0] (xinetd's NAMEINARGS).
    s.exec_path = s.exec.front().substr(1);
    s.exec.erase(s.exec.begin());
    if (s.exec.empty()) r.bad(*r.get("exec"), "exec", "\"@PATH\" must be followed by argv[0]");
  } else if (!s.exec.empty()) {
    s.exec_path = s.exec.front();
  }
  std::string internal;
  if (r.read_string("internal", internal) && !(s.internal = inloop::parse_internal(internal)))
    r.bad(*r.get("internal"), "internal", "expected " + internal_names() + ", got \"" + internal + "\"");
  // For the checks below a bad name counts as set, and "" as unset, as the text always did.
  const bool has_internal = !internal.empty();
  std::string redirect;
  if (r.read_string("redirect", redirect)) {
    std::string why;
    auto spec = net::parse_listen(redirect, why);
    if (!spec || (spec->kind != net::Kind::inet4 && spec->kind != net::Kind::inet6) || spec->is_wildcard())
      r.bad(*r.get("redirect"), "redirect", "expected ADDR:PORT or [V6]:PORT of a host, got \"" + redirect + "\"");
    else
      s.redirect = spec;
  }
  int what = !s.exec.empty() + has_internal + static_cast<int>(s.redirect.has_value());
  if (what > 1)
    for (const char* key : {"internal", "redirect"})
      if (auto* n = r.get(key)) r.bad(*n, key, "exec, internal and redirect exclude each other");
  r.read_bool("disabled", s.disabled);
  r.read_bool("dynamic_user", s.dynamic_user);
  read_identity(r, s);
  if (r.read_string("log_target", s.log_target)) {
    std::string why;
    if (auto spec = log::SinkSpec::parse(s.log_target, why)) s.log_sink = std::move(*spec);
    else r.bad(*r.get("log_target"), "log_target", why);
  }
  s.log_on_success = read_log_fields(r, "log_on_success",
                                     kLogPid | kLogHost | kLogUserid | kLogExit | kLogDuration | kLogTraffic, kLogAll);
  s.log_on_failure = read_log_fields(r, "log_on_failure", kLogHost | kLogUserid | kLogAttempt, kLogAll);
  std::string stdio;
  if (r.read_string("stdio", stdio)) {
    if (stdio == "socket") s.stdio = Stdio::socket;
    else if (stdio == "listen-fds") s.stdio = Stdio::listen_fds;
    else r.bad(*r.get("stdio"), "stdio", "expected \"socket\" or \"listen-fds\", got \"" + stdio + "\"");
  }
  r.read_duration("runtime_max", s.runtime_max);
  r.read_duration("timeout_stop", s.timeout_stop);
  if (auto* lt = sub_table(r, "limits")) read_limits(*lt, r, s.limits);
  if (auto* n = r.get("environment")) {
    auto add = [&](const std::string& k, const std::string& v, const toml::node& at) {
      if (!valid_env_name(k)) r.bad(at, "environment", "bad variable name \"" + k + "\"");
      else s.environment.emplace_back(k, v);
    };
    if (auto* t = n->as_table()) {
      for (auto&& [k, v] : *t) {
        if (!v.is_string()) r.bad(v, "environment." + std::string(k.str()), "expected a string, got " + type_name(v));
        else add(std::string(k.str()), *v.value<std::string>(), v);
      }
    } else if (n->is_array()) {
      for (auto& [kv, node] : r.read_strings("environment", false)) {
        auto eq = kv.find('=');
        if (eq == std::string::npos) r.bad(*node, "environment", "expected \"NAME=value\", got \"" + kv + "\"");
        else add(kv.substr(0, eq), kv.substr(eq + 1), *node);
      }
    } else {
      r.wrong_type(*n, "environment", "a table or an array of \"NAME=value\"");
    }
  }
  for (auto& [name, node] : r.read_strings("pass_environment", false)) {
    if (!valid_env_name(name)) r.bad(*node, "pass_environment", "bad variable name \"" + name + "\"");
    else s.pass_environment.push_back(name);
  }
  if (r.read_string("working_directory", s.working_directory) && s.working_directory.front() != '/')
    r.bad(*r.get("working_directory"), "working_directory", "must be an absolute path");
  if (auto* n = r.get("umask")) {
    std::string v = n->is_string() ? *n->value<std::string>() : "";
    char* end = nullptr;
    unsigned long m = std::strtoul(v.c_str(), &end, 8);
    if (v.empty() || *end || m > 0777) r.bad(*n, "umask", "expected an octal string such as \"0027\"");
    else s.umask = static_cast<mode_t>(m), s.umask_set = true;
  }
  int nice = 0;
  if (r.get("nice")) {
    r.read_int("nice", nice, -20, 19);
    s.nice = nice;
  }
  read_sandbox(r, s, name);
  r.finish();
  // After the unknown keys, as before: "internal" counts as set even when its name was bad.
  if (s.exec.empty() && !has_internal && !s.redirect)
    r.problems().add(r.where_table(), r.name("exec"), "missing or empty (or set internal or redirect)");
}

bool valid_service_name(std::string_view n) {
  return !n.empty() && n.size() <= 128 && std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '@';
  });
}

std::optional<std::string> read_file(const std::string& path, Problems& p) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    p.add({path, 0, 0}, "", std::string("cannot read: ") + std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Global parse_global(std::string_view text, const std::string& file, Problems& p) {
  Global g;
  g.file = file;
  auto doc = parse_toml(text, file, p);
  if (!doc) return g;
  TableReader top(*doc, "", file, p);
  if (auto* t = sub_table(top, "superd")) {
    TableReader r(*t, "superd", file, p);
    if (auto* n = r.get("dynamic_uid_range")) {
      g.uid_range_where = r.where(*n);
      auto* a = n->as_array();
      if (!a || a->size() != 2 || !a->get(0)->is_integer() || !a->get(1)->is_integer()) {
        r.bad(*n, "dynamic_uid_range", "expected [FIRST, LAST], two integers");
      } else {
        int64_t lo = *a->get(0)->value<int64_t>(), hi = *a->get(1)->value<int64_t>();
        // 0 is root; 65535 and 4294967295 are (uid_t)-1 in 16 and 32 bits and mean "no UID".
        if (lo < 1 || hi > 4294967294LL || lo > hi) {
          r.bad(*n, "dynamic_uid_range", "expected 1 <= FIRST <= LAST <= 4294967294");
        } else if (hi - lo + 1 > kMaxPoolSize) {
          r.bad(*n, "dynamic_uid_range", "range holds " + std::to_string(hi - lo + 1) + " UIDs; at most " +
                                             std::to_string(kMaxPoolSize));
        } else if (lo <= 65535 && hi >= 65535) {
          r.bad(*n, "dynamic_uid_range", "must not contain 65535 ((uint16_t)-1, \"no user\")");
        } else {
          g.uid_min = static_cast<uint32_t>(lo);
          g.uid_max = static_cast<uint32_t>(hi);
        }
      }
    }
    auto inc = r.read_strings("include", true);
    if (r.get("include")) {
      g.include.clear();
      for (auto& i : inc) g.include.push_back(i.first);
    }
    if (r.read_string("log_level", g.log_level)) {
      static const std::set<std::string> kLevels{"debug", "info", "warning", "error"};
      if (!kLevels.count(g.log_level)) r.bad(*r.get("log_level"), "log_level", "expected debug, info, warning or error");
    }
    for (auto [key, dst] : {std::pair{"runtime_root", &g.runtime_root}, std::pair{"state_root", &g.state_root},
                            std::pair{"cache_root", &g.cache_root}, std::pair{"logs_root", &g.logs_root}}) {
      if (r.read_string(key, *dst) && (dst->empty() || dst->front() != '/' || dst->find("/../") != std::string::npos))
        r.bad(*r.get(key), key, "must be an absolute path without \"..\"");
    }
    r.finish();
  }
  top.finish();
  return g;
}

namespace {
std::optional<Service> parse_service_impl(std::string_view text, const std::string& file, const std::string& name,
                                          Problems& p, bool transient);
}

std::optional<Service> parse_service(std::string_view text, const std::string& file, const std::string& name,
                                     Problems& p) {
  return parse_service_impl(text, file, name, p, false);
}

namespace {
std::string toml_quote(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out.push_back(c);
  }
  return out + "\"";
}
}  // namespace

std::optional<Service> parse_run_service(const std::vector<std::string>& properties,
                                         const std::vector<std::string>& argv, const std::string& name,
                                         Problems& p) {
  std::string text = "[socket]\n[service]\nexec = [";
  for (size_t i = 0; i < argv.size(); ++i) text += (i ? ", " : "") + toml_quote(argv[i]);
  text += "]\n";
  for (const std::string& prop : properties) {
    auto eq = prop.find('=');
    if (eq == std::string::npos || eq == 0) {
      p.add({"-p", 0, 0}, prop, "expected KEY=VALUE");
      continue;
    }
    std::string key = prop.substr(0, eq), value = prop.substr(eq + 1);
    // The value as TOML if it parses as such (true, 5, ["a"], {nofile=8}), else as a string.
    std::string line = key + " = " + value + "\n";
    try {
      (void)toml::parse(line);
    } catch (const toml::parse_error&) {
      line = key + " = " + toml_quote(value) + "\n";
    }
    text += line;
  }
  if (!p.empty()) return std::nullopt;
  return parse_service_impl(text, "-p", name, p, true);
}

namespace {
// The combinations of socket and service kinds that make sense.
void check_modes(const Service& svc, Problems& p) {
  const SocketConfig& so = svc.socket;
  const ServiceConfig& se = svc.service;
  size_t datagrams = 0;
  for (const Listen& l : so.listen) datagrams += l.datagram;
  auto first_datagram = [&]() -> Location {
    for (const Listen& l : so.listen)
      if (l.datagram) return l.where;
    return svc.where;
  };
  if (se.redirect && datagrams) p.add(first_datagram(), "socket.listen_datagram", "redirect relays TCP only");
  if (se.redirect && !so.accept) p.add(svc.where, "socket.accept", "redirect needs accept = true");
  if (se.internal || se.redirect) return;
  if (datagrams && so.accept)
    p.add(first_datagram(), "socket.listen_datagram",
          "a datagram socket is served in wait mode: set accept = false (xinetd's wait = yes)");
  if (!so.accept && se.stdio == Stdio::socket && so.listen.size() > 1)
    p.add(svc.where, "socket.listen",
          "wait mode with stdio = \"socket\" hands over exactly one listening socket; use stdio = \"listen-fds\" for " +
              std::to_string(so.listen.size()));
  if (!so.accept && so.listen.size() > kMaxListenFds)
    p.add(svc.where, "socket.listen", "at most " + std::to_string(kMaxListenFds) + " sockets in wait mode");
}

std::optional<Service> parse_service_impl(std::string_view text, const std::string& file, const std::string& name,
                                          Problems& p, bool transient) {
  Service svc;
  svc.name = name;
  svc.where = {file, 1, 1};
  if (!valid_service_name(name)) {
    p.add(svc.where, "", "bad service name \"" + name + "\" (letters, digits, - _ . @)");
    return std::nullopt;
  }
  size_t before = p.list().size();
  auto doc = parse_toml(text, file, p);
  if (!doc) return std::nullopt;
  TableReader top(*doc, "", file, p);
  if (auto* t = sub_table(top, "socket")) {
    TableReader r(*t, "socket", file, p);
    read_socket(r, svc.socket);
  } else {
    p.add(svc.where, "socket", "missing [socket] table");
  }
  if (auto* t = sub_table(top, "service")) {
    TableReader r(*t, "service", file, p);
    read_service(r, svc.service, svc.name);
  } else {
    p.add(svc.where, "service", "missing [service] table");
  }
  top.finish();
  if (svc.socket.listen.empty() && p.list().size() == before && !transient)
    p.add(svc.where, "socket.listen", "no address to listen on");
  if (p.list().size() == before) check_modes(svc, p);
  if (p.list().size() != before) return std::nullopt;
  return svc;
}
}  // namespace

void validate(const Config& c, Problems& p) {
  // The same address twice, within a service or across services.
  std::vector<std::pair<const Listen*, const Service*>> all;
  for (const Service& s : c.services)
    for (const Listen& l : s.socket.listen) {
      for (auto& [other, other_svc] : all)
        if (l.datagram == other->datagram && l.spec.conflicts_with(other->spec))
          p.add(l.where, "socket.listen",
                "\"" + l.spec.to_string() + "\" overlaps \"" + other->spec.to_string() + "\" of service " +
                    other_svc->name + " (" + other->where.file + ":" + std::to_string(other->where.line) + ")");
      all.emplace_back(&l, &s);
    }
  // The dynamic range must not hold a user or group the system database knows.
  auto clash = userdb::first_clashes(c.global.uid_min, c.global.uid_max, 3);
  if (!clash.empty()) {
    std::string names;
    for (auto& cl : clash) names += (names.empty() ? "" : ", ") + cl;
    Location w = c.global.uid_range_where.line ? c.global.uid_range_where : Location{c.global.file, 1, 1};
    p.add(w, "superd.dynamic_uid_range",
          "[" + std::to_string(c.global.uid_min) + ", " + std::to_string(c.global.uid_max) +
              "] overlaps the system database: " + names);
  }
}

void validate_system(const Config& c, Problems& p) {
  namespace fs = std::filesystem;
  for (const Service& s : c.services) {
    if (s.service.exec.empty()) continue;  // internal or redirect: nothing to execute
    const std::string& exe = s.service.exec_path;
    if (exe.empty() || exe.front() != '/') {
      p.add(s.where, "service.exec[0]", "\"" + exe + "\" must be an absolute path");
      continue;
    }
    struct stat st {};
    if (::stat(exe.c_str(), &st) != 0) {
      p.add(s.where, "service.exec[0]", "\"" + exe + "\": " + std::strerror(errno));
      continue;
    }
    if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
      p.add(s.where, "service.exec[0]", "\"" + exe + "\" is not an executable file");
      continue;
    }
    if (s.service.dynamic_user) {
      // A dynamic UID is "other" to every file: it needs o+x on the program and o+x on each directory above it.
      if (!(st.st_mode & S_IXOTH)) {
        p.add(s.where, "service.exec[0]", "\"" + exe + "\" is not executable by a dynamic user (needs o+x)");
        continue;
      }
      for (fs::path d = fs::path(exe).parent_path(); !d.empty() && d != d.root_path(); d = d.parent_path()) {
        struct stat ds {};
        if (::stat(d.c_str(), &ds) == 0 && !(ds.st_mode & S_IXOTH)) {
          p.add(s.where, "service.exec[0]",
                "\"" + exe + "\" is not reachable by a dynamic user: directory " + d.string() + " lacks o+x");
          break;
        }
      }
    }
  }
}

Config load(const std::string& path, Problems& p) { return load(path, {}, p); }

namespace {
// Problems in a converted service point at the line of the source it came from.
void map_lines(Problems& p, size_t from, const MemoryService& m) {
  Problems mapped;
  for (size_t i = 0; i < p.list().size(); ++i) {
    Problem pr = p.list()[i];
    if (i >= from && pr.where.file == m.file) {
      uint32_t line = pr.where.line;
      pr.where.line = line >= 1 && line <= m.line_origin.size() ? m.line_origin[line - 1] : 0;
      pr.where.column = 0;
      pr.message += " (in the converted service " + m.name + ")";
    }
    mapped.add(pr.where, pr.key, pr.message);
  }
  p = std::move(mapped);
}
}  // namespace

Config load(const std::string& path, const std::vector<MemoryService>& extra, Problems& p) {
  namespace fs = std::filesystem;
  Config c;
  std::set<std::string> names;
  auto add = [&](std::optional<Service> svc) {
    if (!svc) return;
    if (svc->service.disabled) c.disabled.push_back(svc->name);
    else c.services.push_back(std::move(*svc));
  };
  if (path.empty()) {
    c.global.include.clear();
  } else {
    auto text = read_file(path, p);
    if (!text) return c;
    c.global = parse_global(*text, path, p);
  }
  fs::path base = fs::path(path).parent_path();
  for (const MemoryService& m : extra) {
    if (!names.insert(m.name).second) {
      p.add({m.file, m.line_origin.empty() ? 0 : m.line_origin.front(), 0}, "", "service \"" + m.name + "\" is defined twice");
      continue;
    }
    size_t before = p.list().size();
    auto svc = parse_service(m.toml, m.file, m.name, p);
    if (p.list().size() != before) map_lines(p, before, m);
    if (svc) {
      // Later checks (overlaps, exec) name the source lines too.
      svc->where = {m.file, m.origin_line, 0};
      for (Listen& l : svc->socket.listen)
        l.where = {m.file, l.where.line >= 1 && l.where.line <= m.line_origin.size() ? m.line_origin[l.where.line - 1] : 0, 0};
    }
    add(std::move(svc));
  }
  for (const std::string& pattern : c.global.include) {
    fs::path full = fs::path(pattern).is_absolute() ? fs::path(pattern) : base / pattern;
    glob_t g{};
    int rc = ::glob(full.c_str(), 0, nullptr, &g);
    if (rc != 0 && rc != GLOB_NOMATCH) p.add({path, 1, 1}, "superd.include", "cannot expand \"" + pattern + "\"");
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
      std::string file = g.gl_pathv[i];
      std::string name = fs::path(file).stem().string();
      if (c.services.size() >= kMaxServices) {
        p.add({file, 1, 1}, "", "more than " + std::to_string(kMaxServices) + " services");
        break;
      }
      if (!names.insert(name).second) {
        p.add({file, 1, 1}, "", "service \"" + name + "\" is defined twice");
        continue;
      }
      auto body = read_file(file, p);
      if (!body) continue;
      add(parse_service(*body, file, name, p));
    }
    globfree(&g);
  }
  validate(c, p);
  validate_system(c, p);
  return c;
}

}  // namespace superd::config
