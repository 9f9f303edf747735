// The [service] table (program, identity, logging, limits, environment, cgroup bounds; the
// sandbox keys are sandbox.cpp's) and a whole service file: [socket] and [service], then the
// checks that need both (which socket and service kinds go together).
#include <pwd.h>
#include <sys/resource.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "config/tables.hpp"
#include "config/template.hpp"
#include "inloop/internal_service.hpp"
#include "util/sink.hpp"
#include "util/units.hpp"

namespace superd::config {

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
    if (c == 'n')
      out += name;
    else if (c == 'p')
      out += prefix;
    else if (c == 'i')
      out += instance;
    else if (c == 'c' && serial)
      out += *serial;
    else if (c == '%')
      out.push_back('%');
    else
      out.push_back('%'), out.push_back(c);
  }
  return out;
}

namespace detail {
namespace {

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
      if (s == "infinity")
        v = units::kInfinity;
      else if (l.is_time) {
        if (auto d = units::parse_duration(s, &why))
          v = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(*d).count());
      } else {
        v = units::parse_size(s, &why);
      }
      if (!v && why == units::ParseError::out_of_range)
        r.bad(*n, l.name,
              "value \"" + s + "\" is too large (at most " +
                  (l.is_time ? std::string(units::kMaxDurationText) + " or \"infinity\")"
                             : "2^64-1 bytes or \"infinity\")"));
      else if (!v)
        r.bad(*n, l.name,
              "bad value \"" + s + "\"" + (l.is_time ? " (a duration, e.g. \"30s\")" : " (a size, e.g. \"512M\")"));
    } else {
      r.wrong_type(*n, l.name, "an integer or a string");
    }
    if (v) out.push_back({l.resource, *v == units::kInfinity ? RLIM_INFINITY : static_cast<rlim_t>(*v)});
  }
  r.finish();
}

bool valid_env_name(std::string_view k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

uint32_t read_log_fields(TableReader& r, const std::string& key, uint32_t allowed, uint32_t dflt) {
  static const std::pair<const char*, uint32_t> kFields[] = {
      {"PID", kLogPid},           {"HOST", kLogHost},       {"USERID", kLogUserid},  {"EXIT", kLogExit},
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
        if (e.is_string())
          groups.emplace_back(*e.value<std::string>(), &e);
        else if (e.is_integer() && *e.value<int64_t>() >= 0)
          groups.emplace_back(std::to_string(*e.value<int64_t>()), &e);
        else
          r.bad(e, "supplementary_groups[" + std::to_string(i) + "]", "expected a group name or number");
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
    if (auto* n = r.get("dynamic_user"); n && !r.get("user"))
      r.bad(*n, "user", "dynamic_user = false needs user = \"NAME\"");
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
    if (auto gid = resolve_group(group))
      s.gid = *gid;
    else
      r.bad(*r.get("group"), "group", "no such group \"" + group + "\"");
  }
  for (auto& [g, node] : groups) {
    if (auto gid = resolve_group(g))
      s.supplementary_groups.push_back(*gid);
    else
      r.bad(*node, "supplementary_groups", "no such group \"" + g + "\"");
  }
}

// memory_max = "512M", tasks_max = 64, cpu_weight = 100 (1..10000), as systemd's directives.
void read_cgroup_bounds(TableReader& r, ServiceConfig& s) {
  if (auto* n = r.get("memory_max")) {
    std::optional<uint64_t> v = size_value(*n);
    if (!v)
      r.bad(*n, "memory_max", "expected a size such as \"512M\" or \"infinity\"");
    else
      s.memory_max = v;
  }
  if (auto* n = r.get("tasks_max")) {
    if (n->is_integer() && *n->value<int64_t>() > 0)
      s.tasks_max = static_cast<uint64_t>(*n->value<int64_t>());
    else if (n->is_string() && *n->value<std::string>() == "infinity")
      s.tasks_max = units::kInfinity;
    else
      r.bad(*n, "tasks_max", "expected a positive integer or \"infinity\"");
  }
  if (auto* n = r.get("cpu_weight")) {
    if (n->is_integer() && *n->value<int64_t>() >= 1 && *n->value<int64_t>() <= 10000)
      s.cpu_weight = static_cast<uint32_t>(*n->value<int64_t>());
    else
      r.bad(*n, "cpu_weight", "expected an integer from 1 to 10000");
  }
}

// "echo, discard, daytime, chargen or time", from inloop's one list.
std::string internal_names() {
  std::string out;
  for (size_t i = 0; i < inloop::kInternalNames.size(); ++i)
    out += std::string(i == 0                                   ? ""
                       : i + 1 == inloop::kInternalNames.size() ? " or "
                                                                : ", ") +
           inloop::kInternalNames[i].second;
  return out;
}

}  // namespace

void read_service(TableReader& r, ServiceConfig& s, const std::string& name) {
  read_cgroup_bounds(r, s);
  auto exec = r.read_strings("exec", false);
  for (auto& e : exec) s.exec.push_back(e.first);
  if (auto* n = r.get("exec")) s.exec_where = r.where(*n);
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
    if (auto spec = log::SinkSpec::parse(s.log_target, why))
      s.log_sink = std::move(*spec);
    else
      r.bad(*r.get("log_target"), "log_target", why);
  }
  s.log_on_success = read_log_fields(r, "log_on_success",
                                     kLogPid | kLogHost | kLogUserid | kLogExit | kLogDuration | kLogTraffic, kLogAll);
  s.log_on_failure = read_log_fields(r, "log_on_failure", kLogHost | kLogUserid | kLogAttempt, kLogAll);
  std::string stdio;
  if (r.read_string("stdio", stdio)) {
    if (stdio == "socket")
      s.stdio = Stdio::socket;
    else if (stdio == "listen-fds")
      s.stdio = Stdio::listen_fds;
    else
      r.bad(*r.get("stdio"), "stdio", "expected \"socket\" or \"listen-fds\", got \"" + stdio + "\"");
  }
  r.read_duration("runtime_max", s.runtime_max);
  r.read_duration("timeout_stop", s.timeout_stop);
  if (auto* lt = sub_table(r, "limits")) read_limits(*lt, r, s.limits);
  if (auto* n = r.get("environment")) {
    auto add = [&](const std::string& k, const std::string& v, const toml::node& at) {
      if (!valid_env_name(k))
        r.bad(at, "environment", "bad variable name \"" + k + "\"");
      else
        s.environment.emplace_back(k, v);
    };
    if (auto* t = n->as_table()) {
      for (auto&& [k, v] : *t) {
        if (!v.is_string())
          r.bad(v, "environment." + std::string(k.str()), "expected a string, got " + type_name(v));
        else
          add(std::string(k.str()), *v.value<std::string>(), v);
      }
    } else if (n->is_array()) {
      for (auto& [kv, node] : r.read_strings("environment", false)) {
        auto eq = kv.find('=');
        if (eq == std::string::npos)
          r.bad(*node, "environment", "expected \"NAME=value\", got \"" + kv + "\"");
        else
          add(kv.substr(0, eq), kv.substr(eq + 1), *node);
      }
    } else {
      r.wrong_type(*n, "environment", "a table or an array of \"NAME=value\"");
    }
  }
  for (auto& [name, node] : r.read_strings("pass_environment", false)) {
    if (!valid_env_name(name))
      r.bad(*node, "pass_environment", "bad variable name \"" + name + "\"");
    else
      s.pass_environment.push_back(name);
  }
  if (r.read_string("working_directory", s.working_directory) && s.working_directory.front() != '/')
    r.bad(*r.get("working_directory"), "working_directory", "must be an absolute path");
  if (auto* n = r.get("umask")) {
    std::string v = n->is_string() ? *n->value<std::string>() : "";
    char* end = nullptr;
    unsigned long m = std::strtoul(v.c_str(), &end, 8);
    if (v.empty() || *end || m > 0777)
      r.bad(*n, "umask", "expected an octal string such as \"0027\"");
    else
      s.umask = static_cast<mode_t>(m), s.umask_set = true;
  }
  int nice = 0;
  if (r.get("nice")) {
    r.read_int("nice", nice, -20, 19);
    s.nice = nice;
  }
  read_sandbox(r, s, name);
  r.finish();
  // Last, after the unknown keys. A bad internal name counts as set here (has_internal).
  if (s.exec.empty() && !has_internal && !s.redirect)
    r.problems().add(r.where_table(), r.name("exec"), "missing or empty (or set internal or redirect)");
}

namespace {

// A plain name, or a template's prefix: letters, digits, - _ . (at most 128). An instance's
// part after the '@' follows instance_name_error.
bool valid_service_name(std::string_view n) {
  if (auto unit = split_unit_name(n))
    return valid_service_name(unit->prefix) && (unit->is_template() || instance_name_error(unit->instance).empty());
  return !n.empty() && n.size() <= 128 && std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// An instance's specifiers, in every string value of the document (template.hpp).
void expand_strings(toml::node& n, const UnitName& name) {
  if (auto* s = n.as_string()) {
    s->get() = expand_instance(s->get(), name);
  } else if (auto* t = n.as_table()) {
    for (auto&& [k, v] : *t) expand_strings(v, name);
  } else if (auto* a = n.as_array()) {
    for (auto& v : *a) expand_strings(v, name);
  }
}

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
  if (!so.accept && se.sandbox.idmap_dirs)
    p.add(svc.where, "service.state_directory_idmap",
          "is for per-connection services: a wait-mode instance already runs as its directories' owner");
  if (!so.accept && so.listen.size() > kMaxListenFds)
    p.add(svc.where, "socket.listen", "at most " + std::to_string(kMaxListenFds) + " sockets in wait mode");
}

}  // namespace

std::optional<Service> parse_service_file(std::string_view text, const std::string& file, const std::string& name,
                                          Problems& p, bool transient) {
  Service svc;
  svc.name = name;
  svc.where = {file, 1, 1};
  if (!valid_service_name(name)) {
    auto unit = split_unit_name(name);
    std::string why = unit && !unit->is_template() ? instance_name_error(unit->instance) : "";
    p.add(svc.where, "",
          "bad service name \"" + name + "\" (" + (why.empty() ? "letters, digits, - _ . and one @" : why) + ")");
    return std::nullopt;
  }
  size_t before = p.list().size();
  auto doc = parse_toml(text, file, p);
  if (!doc) return std::nullopt;
  if (auto unit = split_unit_name(name); unit && !unit->is_template()) expand_strings(*doc, *unit);
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

}  // namespace detail

std::optional<Service> parse_service(std::string_view text, const std::string& file, const std::string& name,
                                     Problems& p) {
  return detail::parse_service_file(text, file, name, p, false);
}

}  // namespace superd::config
