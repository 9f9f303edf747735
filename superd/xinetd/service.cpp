// One xinetd service, its attributes applied (attrs.cpp), turned into a superd service file.
// The steps follow xinetd's confparse.c: dispatch (type, flags, socket_type <-> protocol, wait,
// port from /etc/services), then the program, the listen address, limits, access control,
// identity, process settings and logging, and last whether the file is written disabled:
// `disable = yes`, the defaults' enabled/disabled lists, or a reason xinetd would not run it.
// A step that finds the service unconvertible (RPC, no port, ...) warns and ends the build.
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "xinetd/addr.hpp"
#include "xinetd/attrs.hpp"
#include "xinetd/model.hpp"

namespace superd::xinetd::detail {
namespace {

constexpr uint64_t kConnectionsCap = 1048576;  // superd's cap on max_connections

// rlimit value -> TOML value ("infinity", a count, or "NK"/"NM" for sizes).
std::string limit_value(const std::string& v, bool count) {
  if (v == "UNLIMITED") return toml_string("infinity");
  char suffix = std::string("kKmM").find(v.back()) != std::string::npos ? v.back() : 0;
  if (!suffix) return v;
  std::string num = v.substr(0, v.size() - 1);
  uint64_t mul = (suffix == 'k' || suffix == 'K') ? 1024 : 1024 * 1024;
  if (count) return std::to_string(std::stoull(num) * mul);
  return toml_string(num + static_cast<char>(std::toupper(suffix)));
}

class ServiceBuild {
 public:
  ServiceBuild(const Entry& e, State& st, const State& defaults, std::vector<Warning>& warnings)
      : e_(e), st_(st), d_(defaults), w_(warnings) {}

  std::optional<Built> run() {
    if (!dispatch() || !program() || !listen()) return std::nullopt;
    socket_options();
    limits();
    access();
    if (!internal_ && !redirect_) {
      identity();
      process();
    }
    logging();
    disabled();
    return finish();
  }

 private:
  // --- lookups: the service's own value, else (for the inherited ones) the defaults' ---
  const Attr* get(const std::string& name) const {
    if (auto it = st_.single.find(name); it != st_.single.end()) return &it->second;
    if (inherited(name))
      if (auto it = d_.single.find(name); it != d_.single.end()) return &it->second;
    return nullptr;
  }
  // The source line of a value in this service's file: 0 when it comes from defaults{}.
  uint32_t line_of(const std::string& name) const {
    auto it = st_.single.find(name);
    return it == st_.single.end() ? 0 : it->second.line;
  }
  bool flag(const char* f) const { return contains(flags_, f); }
  bool yes(const char* name) const {
    const Attr* a = get(name);
    return a && a->values[0] == "yes";
  }
  void warn(uint32_t line, const std::string& attr, const std::string& msg) {
    w_.push_back({e_.file, line, attr, msg});
  }
  bool skip(uint32_t line, const std::string& attr, const std::string& why) {
    warn(line, attr, why + "; service " + e_.name + " not converted");
    return false;
  }
  // xinetd would not run the service: it is written disabled, with the first reason found.
  void refuse(uint32_t line, const std::string& why) {
    if (st_.refused.empty()) {
      st_.refused = why;
      st_.refused_line = line;
    }
  }
  void refuse_warn(uint32_t line, const std::string& attr, const std::string& what) {
    warn(line, attr, what + ": xinetd disables the service");
    refuse(line, "xinetd disables this service: " + what);
  }

  bool dispatch();
  bool program();
  bool listen();
  void socket_options();
  void limits();
  void access();
  void identity();
  void process();
  void logging();
  void disabled();
  Built finish();

  const Entry& e_;
  State& st_;
  const State& d_;
  std::vector<Warning>& w_;

  std::string id_;
  std::vector<std::string> types_, flags_;
  uint32_t l_type_ = 0, l_flags_ = 0;
  bool internal_ = false, unlisted_ = false, dgram_ = false, wait_ = false;
  const Attr* redirect_ = nullptr;
  std::string proto_;
  uint16_t port_ = 0;
  uint32_t l_port_ = 0;
  Socket s_;
  Program p_;
};

bool ServiceBuild::dispatch() {
  const Attr* id = get("id");
  id_ = id ? id->values[0] : e_.name;
  if (const Attr* t = get("type")) types_ = t->values;
  if (const Attr* f = get("flags")) flags_ = f->values;
  l_type_ = line_of("type");
  l_flags_ = line_of("flags");
  for (const char* t : {"RPC", "TCPMUX", "TCPMUXPLUS"})
    if (contains(types_, t)) return skip(l_type_, "type", std::string(t) + " services are not supported by superd");
  internal_ = contains(types_, "INTERNAL");
  unlisted_ = contains(types_, "UNLISTED");
  if (flag("SENSOR"))
    return skip(l_flags_, "flags", "SENSOR (a trap that blacklists its peers) is not supported by superd");
  for (const char* f : {"NORETRY", "INTERCEPT", "IDONLY", "LABELED"})
    if (flag(f)) warn(l_flags_, "flags", std::string(f) + " is not carried over (superd has no equivalent)");

  // socket_type and protocol imply each other (service_fill).
  const Attr* st = get("socket_type");
  const Attr* pr = get("protocol");
  std::string socket_type = st ? st->values[0] : "";
  std::string protocol = pr ? pr->values[0] : "";
  if (socket_type.empty() && protocol.empty())
    return skip(e_.line, e_.name, "neither socket_type nor protocol given (xinetd refuses it too)");
  if (socket_type.empty()) socket_type = protocol == "udp" ? "dgram" : "stream";
  if (socket_type != "stream" && socket_type != "dgram")
    return skip(line_of("socket_type"), "socket_type", "socket_type " + socket_type + " is not supported by superd");
  dgram_ = socket_type == "dgram";
  proto_ = dgram_ ? "udp" : "tcp";
  if (!protocol.empty() && protocol != proto_)
    warn(line_of("protocol"), "protocol",
         "protocol " + protocol + " does not go with socket_type " + socket_type + "; superd uses " + proto_);

  if (!get("wait")) {
    warn(e_.line, "wait", "missing: xinetd disables the service; converted as wait = no, disabled");
    refuse(e_.line, "xinetd disables this service: it has no wait attribute");
  }
  wait_ = yes("wait");

  // The port: given, or /etc/services by service name (not id) and protocol. xinetd checks a
  // given port against /etc/services unless the service is UNLISTED.
  l_port_ = line_of("port");
  auto listed = service_port(e_.name, proto_);
  if (const Attr* p = get("port")) {
    port_ = static_cast<uint16_t>(std::stoul(p->values[0]));
    if (!unlisted_ && listed && *listed != port_) {
      warn(l_port_, "port",
           "/etc/services says " + e_.name + "/" + proto_ + " is port " + std::to_string(*listed) +
               ": xinetd refuses the mismatch and disables the service; add type = UNLISTED");
      refuse(l_port_, "xinetd disables this service: its port differs from /etc/services");
    } else if (!unlisted_ && !listed) {
      warn(l_port_, "port",
           e_.name + "/" + proto_ +
               " is not in /etc/services: xinetd disables such a service unless it has type = "
               "UNLISTED");
      refuse(l_port_, "xinetd disables this service: not in /etc/services and not UNLISTED");
    }
  } else if (unlisted_) {
    return skip(l_type_, "port", "an UNLISTED service needs a port");
  } else if (listed) {
    port_ = *listed;
    l_port_ = e_.line;
  } else {
    return skip(e_.line, "port", "no port, and " + e_.name + "/" + proto_ + " is not in /etc/services");
  }
  return true;
}

// internal, redirect or exec.
bool ServiceBuild::program() {
  p_.l_program = e_.line;
  redirect_ = get("redirect");
  if (internal_) {
    if (!is_internal_service(e_.name))
      return skip(l_type_, "type",
                  "internal service " + e_.name + " is not one superd serves (echo, discard, daytime, chargen, time)");
    p_.internal = e_.name;
    if (flag("NAMEINARGS")) refuse_warn(l_flags_, "flags", "NAMEINARGS on an INTERNAL service");
    return true;
  }
  if (redirect_) {
    uint32_t l = line_of("redirect");
    if (dgram_ || wait_) return skip(l, "redirect", "xinetd redirects only stream services with wait = no");
    const std::string& host = redirect_->values[0];
    auto addr = numeric_address(host);
    if (!addr) {
      auto found = resolve_host(host, host.find(':') != std::string::npos ? AF_INET6 : AF_INET);
      if (found.empty()) return skip(l, "redirect", "cannot resolve \"" + host + "\"");
      addr = found.front();
      warn(l, "redirect", "host name \"" + host + "\" resolved now to " + *addr);
    }
    const std::string& port = redirect_->values[1];
    uint16_t to = all_digits(port) ? static_cast<uint16_t>(std::stoul(port)) : service_port(port, "tcp").value_or(0);
    p_.redirect = host_port(*addr, to);
    p_.l_program = l;
    if (flag("NAMEINARGS")) refuse_warn(l_flags_, "flags", "NAMEINARGS on a redirected service");
    return true;
  }
  const Attr* server = get("server");
  if (!server) return skip(e_.line, "server", "no server (xinetd refuses it too)");
  p_.l_program = server->line;
  const Attr* args = get("server_args");
  p_.exec = {server->values[0]};
  if (flag("NAMEINARGS")) {
    // argv comes whole from server_args: superd's "@path" form.
    if (!args)
      refuse_warn(l_flags_, "flags", "NAMEINARGS without server_args");
    else
      p_.exec = {"@" + server->values[0]};
  }
  if (args) p_.exec.insert(p_.exec.end(), args->values.begin(), args->values.end());
  return true;
}

// xinetd binds one IPv6 socket that also takes IPv4 unless told otherwise: flags IPv4 makes it
// IPv4 only, v6only = yes IPv6 only; bind (or interface) names the address.
bool ServiceBuild::listen() {
  const bool v6only = yes("v6only");
  const bool ipv6 = flag("IPv6"), ipv4 = flag("IPv4") && !ipv6;
  std::string listen;
  s_.l_listen = l_port_;
  auto dual_stack = [&](uint32_t line) {
    if (!v6only) {
      s_.bind_ipv6_only = "both";
      s_.l_v6 = line;
    }
  };
  if (const Attr* b = get("bind")) {
    const std::string& v = b->values[0];
    uint32_t l = line_of("bind");
    s_.l_listen = l;
    auto addr = numeric_address(v);
    if (!addr) {
      int family = ipv6 ? AF_INET6 : AF_INET;
      if (auto ifa = interface_address(v, family)) {
        addr = ifa;
        warn(l, b->name,
             "\"" + v + "\" is an interface name, resolved now to its address " + *addr +
                 "; xinetd takes only addresses and host names (it disables the service)");
        refuse(l, "xinetd disables this service: " + b->name + " names an interface");
      } else {
        auto found = resolve_host(v, ipv6 ? AF_INET6 : ipv4 ? AF_INET : AF_UNSPEC);
        if (found.empty()) return skip(l, b->name, "cannot resolve \"" + v + "\"");
        addr = found.front();
        warn(l, b->name, "host name \"" + v + "\" resolved now to " + *addr);
      }
    }
    listen = host_port(*addr, port_);
    if (*addr == "::") dual_stack(l);
  } else if (ipv6) {
    listen = "[::]:" + std::to_string(port_);
    dual_stack(get("v6only") ? line_of("v6only") : l_flags_);
  } else if (ipv4) {
    listen = "0.0.0.0:" + std::to_string(port_);
    s_.l_listen = l_flags_;
  } else if (v6only) {
    listen = "[::]:" + std::to_string(port_);
  } else {
    listen = std::to_string(port_);
  }
  (dgram_ ? s_.listen_datagram : s_.listen).push_back(listen);
  return true;
}

void ServiceBuild::socket_options() {
  if (!internal_ && (wait_ || dgram_)) {
    if (!wait_)
      warn(line_of("wait"), "wait",
           "superd serves datagram sockets in wait mode only: converted with accept = false (one "
           "server at a time gets the socket instead of one per datagram)");
    s_.accept = false;
    s_.l_accept = line_of("wait");
  }
  if (!flag("NODELAY") && !flag("KEEPALIVE")) return;
  if (dgram_) {
    warn(l_flags_, "flags", "NODELAY and KEEPALIVE apply to stream sockets only; ignored");
    return;
  }
  if (flag("NODELAY")) s_.no_delay = true, s_.l_nodelay = l_flags_;
  if (flag("KEEPALIVE")) s_.keep_alive = true, s_.l_keepalive = l_flags_;
}

// instances -> max_connections, per_source -> max_connections_per_source, cps -> a deferring
// rate limit (xinetd's implicit cps = 50 10 is not added).
void ServiceBuild::limits() {
  if (const Attr* a = get("instances")) {
    s_.l_max = line_of("instances");
    uint64_t n = a->values[0] == "UNLIMITED" ? kConnectionsCap : std::stoull(a->values[0]);
    if (n > kConnectionsCap) {
      warn(s_.l_max, "instances", "more than superd's cap of 1048576; capped");
      n = kConnectionsCap;
    }
    if (n == 0) {
      warn(s_.l_max, "instances", "0 lets no connection in; the service is written disabled");
      refuse(s_.l_max, "instances = 0: no connection would be served");
    } else {
      s_.max_connections = n;
    }
  }
  if (const Attr* a = get("per_source")) {
    s_.l_per_source = line_of("per_source");
    if (a->values[0] == "0") {
      warn(s_.l_per_source, "per_source", "0 lets no connection in; the service is written disabled");
      refuse(s_.l_per_source, "per_source = 0: no connection would be served");
    } else if (a->values[0] != "UNLIMITED") {
      s_.max_connections_per_source = std::min<uint64_t>(std::stoull(a->values[0]), kConnectionsCap);
    }
  }
  if (const Attr* a = get("cps")) {
    s_.l_rate = line_of("cps");
    if (uint64_t n = std::stoull(a->values[0]); n > 0) {
      s_.max_connection_rate = std::min(n, kConnectionsCap);
      s_.rate_interval = "1s";
      s_.rate_comment = "xinetd's cps = " + a->values[0] + " " + a->values[1] + " disabled the service for " +
                        a->values[1] + " s when exceeded; superd defers accepting instead";
    }
  }
}

// only_from -> allow, no_access -> deny (an only_from given but empty admits nobody), times,
// banners.
void ServiceBuild::access() {
  if (st_.only_from.present && st_.only_from.items.empty()) {
    s_.deny = std::vector<std::string>{"0.0.0.0/0", "::/0"};
    s_.l_deny = st_.only_from.line;
    s_.deny_comment = "an empty only_from admits nobody in xinetd";
  } else if (st_.only_from.present) {
    s_.allow = st_.only_from.items;
    s_.l_allow = st_.only_from.line;
  }
  if (st_.no_access.present && !st_.no_access.items.empty() && !s_.deny) {
    s_.deny = st_.no_access.items;
    s_.l_deny = st_.no_access.line;
  }
  if (const Attr* a = get("access_times")) {
    std::vector<std::string> times;
    for (const auto& t : a->values) {
      std::string norm;
      valid_time(t, norm);
      times.push_back(norm);
    }
    s_.access_times = times;
    s_.l_times = line_of("access_times");
  }
  for (auto [key, slot, l] : {std::tuple{"banner", &s_.banner, &s_.l_banner},
                              std::tuple{"banner_success", &s_.banner_success, &s_.l_banner_success},
                              std::tuple{"banner_fail", &s_.banner_fail, &s_.l_banner_fail}}) {
    if (const Attr* a = get(key)) {
      *slot = a->values[0];
      *l = line_of(key);
    }
  }
}

// user/group -> a static identity; groups = yes -> the user's groups, listed now.
void ServiceBuild::identity() {
  if (yes("dynamic_user")) {
    // The operator asks for superd's model: a fresh UID per connection and the sandbox that
    // comes with it; user, group and groups (if any) are what it replaces.
    p_.dynamic = true;
    p_.l_dynamic = line_of("dynamic_user");
    if (const Attr* u = get("user")) p_.user = u->values[0];
    return;
  }
  if (const Attr* u = get("user")) {
    p_.user = u->values[0];
    p_.l_user = u->line;
  } else {
    warn(e_.line, "user",
         "missing: xinetd (running as root) disables the service; converted with superd's "
         "dynamic user, disabled");
    refuse(e_.line, "xinetd disables this service: it has no user attribute");
  }
  if (const Attr* g = get("group")) {
    p_.group = g->values[0];
    p_.l_group = g->line;
  }
  if (!yes("groups")) return;
  p_.l_groups = line_of("groups");
  if (!p_.user) {
    warn(p_.l_groups, "groups", "groups = yes without a user; ignored");
  } else if (auto sg = supplementary_groups_of(*p_.user)) {
    p_.supplementary_groups = *sg;
  } else {
    warn(p_.l_groups, "groups",
         "user " + *p_.user + " is unknown here, so its groups cannot be listed; set supplementary_groups by hand");
  }
}

void ServiceBuild::process() {
  if (const Attr* a = get("umask")) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04lo", std::strtol(a->values[0].c_str(), nullptr, 8));
    p_.umask = buf;
    p_.l_umask = line_of("umask");
  }
  if (const Attr* a = get("nice")) {
    p_.nice = std::stol(a->values[0]);
    p_.l_nice = a->line;
  }
  if (st_.env.present) {
    p_.environment_set = true;
    p_.environment = st_.env.items;
    p_.l_env = st_.env.line;
  }
  if (st_.passenv.present) {
    p_.pass_environment_set = true;
    p_.pass_environment = st_.passenv.items;
    p_.l_passenv = st_.passenv.line;
  }
  for (auto [attr, key, count] : {std::tuple{"rlimit_as", "as", false}, std::tuple{"rlimit_cpu", "cpu", true},
                                  std::tuple{"rlimit_data", "data", false}, std::tuple{"rlimit_files", "nofile", true},
                                  std::tuple{"rlimit_rss", "rss", false}, std::tuple{"rlimit_stack", "stack", false}}) {
    const Attr* a = get(attr);
    if (!a) continue;
    if (std::string(attr) == "rlimit_rss")
      warn(a->line, attr, "carried over as limits.rss, but Linux ignores RLIMIT_RSS");
    p_.limits.push_back({key, limit_value(a->values[0], count), a->line});
  }
}

void ServiceBuild::logging() {
  if (const Attr* a = get("log_type")) {
    p_.l_log_target = line_of("log_type");
    if (a->values[0] == "SYSLOG") {
      p_.log_target = "syslog:" + a->values[1] + (a->values.size() == 3 ? "." + a->values[2] : "");
    } else {
      p_.log_target = "file:" + a->values[1];
      if (a->values.size() > 2)
        warn(a->line, "log_type", "the soft/hard size limits of a FILE log are not carried over");
    }
  }
  // Flags in xinetd's order, whatever order they were written in.
  auto ordered = [](const List& l, const std::vector<std::string>& order) {
    std::vector<std::string> v;
    for (const auto& f : order)
      if (contains(l.items, f)) v.push_back(f);
    return v;
  };
  if (st_.log_on_success.present) {
    p_.log_on_success = ordered(st_.log_on_success, kSuccessFlags);
    p_.l_success = st_.log_on_success.line;
    if (contains(*p_.log_on_success, "TRAFFIC") && !redirect_)
      refuse_warn(p_.l_success ? p_.l_success : e_.line, "log_on_success", "TRAFFIC without redirect");
  }
  if (st_.log_on_failure.present) {
    p_.log_on_failure = ordered(st_.log_on_failure, kFailureFlags);
    p_.l_failure = st_.log_on_failure.line;
  }
}

void ServiceBuild::disabled() {
  if (const Attr* d = get("disable"); d && d->values[0] == "yes") {
    p_.disabled_reason = "disable = yes in xinetd";
    p_.l_disabled = d->line;
  } else if (d_.disabled.present && contains(d_.disabled.items, id_)) {
    p_.disabled_reason = "listed in the defaults' disabled list";
  } else if (d_.enabled.present && !contains(d_.enabled.items, id_)) {
    p_.disabled_reason = "not in the defaults' enabled list";
  } else if (!st_.refused.empty()) {
    p_.disabled_reason = st_.refused;
    p_.l_disabled = st_.refused_line;
  }
}

Built ServiceBuild::finish() {
  Built b;
  b.kind = dgram_ ? "dgram" : "stream";
  b.file.name = id_;
  b.file.origin_file = e_.file;
  b.file.origin_line = e_.line;
  b.file.disabled = !p_.disabled_reason.empty();
  std::vector<std::string> notes;
  if (id_ != e_.name) notes.push_back("xinetd service " + e_.name + ", id " + id_);
  std::string header = "converted by superd import-xinetd from " + e_.file + ":" + std::to_string(e_.line);
  b.file.toml = write_service(header, notes, s_, p_, e_.line, b.file.line_origin);
  return b;
}

}  // namespace

std::optional<Built> build_service(const Entry& e, State& st, const State& defaults, std::vector<Warning>& warnings) {
  return ServiceBuild(e, st, defaults, warnings).run();
}

}  // namespace superd::xinetd::detail
