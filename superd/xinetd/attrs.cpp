// xinetd's attribute tables and value checks (parse.c, parsers.c of xinetd 2.3.15), applied
// line by line. Cumulative attributes (-2 in xinetd's tables) take = += -=; in defaults{} '='
// means '+='. A single-value attribute given another number of values is ignored, as xinetd
// ignores it; a value xinetd's parser rejects disables the service there, so it marks the State
// refused (the service is still written, disabled).
#include "xinetd/attrs.hpp"

#include <netdb.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "xinetd/addr.hpp"
#include "xinetd/model.hpp"

namespace superd::xinetd::detail {

const std::vector<std::string> kSuccessFlags{"PID", "HOST", "USERID", "EXIT", "DURATION", "TRAFFIC"};
const std::vector<std::string> kFailureFlags{"HOST", "USERID", "ATTEMPT", "RECORD"};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

namespace {

// xinetd's attribute tables (parse.c): the number of values; -1: any number, -2: any number
// and the operators += and -= (cumulative); 0: not allowed in that section.
struct Spec {
  const char* name;
  int service_n, defaults_n;
};
// clang-format off
constexpr Spec kSpecs[] = {
    {"socket_type", 1, 0}, {"protocol", 1, 0}, {"wait", 1, 0}, {"user", 1, 0},
    {"group", 1, 0}, {"server", 1, 0}, {"server_args", -1, 0}, {"instances", 1, 1},
    {"log_on_success", -2, -2}, {"log_on_failure", -2, -2}, {"log_type", -1, -2}, {"only_from", -2, -2},
    {"no_access", -2, -2}, {"access_times", -1, 0}, {"type", -1, 0}, {"rpc_version", 1, 0},
    {"rpc_number", 1, 0}, {"id", 1, 0}, {"env", -2, 0}, {"port", 1, 0},
    {"passenv", -2, -2}, {"flags", -1, 0}, {"nice", 1, 0}, {"redirect", 2, 0},
    {"banner", 1, 1}, {"bind", 1, 1}, {"interface", 1, 1}, {"per_source", 1, 1},
    {"groups", 1, 1}, {"banner_success", 1, 1}, {"banner_fail", 1, 1}, {"cps", 2, 2},
    {"disable", 1, 0}, {"max_load", 1, 1}, {"rlimit_as", 1, 0}, {"rlimit_cpu", 1, 0},
    {"rlimit_data", 1, 0}, {"rlimit_files", 1, 0}, {"rlimit_rss", 1, 0}, {"rlimit_stack", 1, 0},
    {"v6only", 1, 1}, {"deny_time", 1, 0}, {"umask", 1, 1}, {"libwrap", 1, 0},
    {"enabled", 0, -2}, {"disabled", 0, -2},
    // superd's own extension (xinetd ignores it as unknown): a fresh UID per connection.
    {"dynamic_user", 1, 1},
};
// clang-format on

const Spec* find_spec(const std::string& name) {
  for (const auto& s : kSpecs)
    if (name == s.name) return &s;
  return nullptr;
}

const std::vector<std::string> kServiceFlags{"INTERCEPT", "NORETRY", "IDONLY", "NAMEINARGS", "NODELAY", "KEEPALIVE",
                                             "NOLIBWRAP", "SENSOR",  "IPv4",   "IPv6",       "LABELED", "REUSE"};
const std::vector<std::string> kTypes{"RPC", "INTERNAL", "TCPMUX", "TCPMUXPLUS", "UNLISTED"};
const std::set<std::string> kFacilities{"daemon", "auth",   "authpriv", "user",   "mail",   "lpr",
                                        "news",   "uucp",   "ftp",      "local0", "local1", "local2",
                                        "local3", "local4", "local5",   "local6", "local7"};
const std::set<std::string> kLevels{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};

bool parse_uint(const std::string& s, uint64_t& out, uint64_t max = UINT64_MAX) {
  if (!all_digits(s) || s.size() > 19) return false;
  out = std::stoull(s);
  return out <= max;
}

// xinetd's get_limit: N, NK or NM (bytes); at most INT64_MAX bytes, so TOML can hold it.
bool valid_limit(const std::string& v) {
  if (v == "UNLIMITED") return true;
  std::string n = v;
  uint64_t mul = 1;
  if (!n.empty() && std::string("kKmM").find(n.back()) != std::string::npos) {
    mul = (n.back() == 'k' || n.back() == 'K') ? 1024 : 1024 * 1024;
    n.pop_back();
  }
  uint64_t x;
  return parse_uint(n, x, static_cast<uint64_t>(INT64_MAX) / mul);
}

// The value check of xinetd's parser for a non-cumulative attribute; "" if fine.
std::string check_single(const std::string& name, const std::vector<std::string>& v) {
  auto yes_no = [&]() -> std::string {
    return v[0] == "yes" || v[0] == "no" ? "" : "expected yes or no, not \"" + v[0] + "\"";
  };
  uint64_t n;
  if (name == "socket_type") {
    static const std::set<std::string> k{"stream", "dgram", "raw", "seqpacket", "rdm"};
    return k.count(v[0]) ? "" : "bad socket type \"" + v[0] + "\"";
  }
  if (name == "protocol")
    return ::getprotobyname(v[0].c_str()) ? "" : "protocol \"" + v[0] + "\" is not in /etc/protocols";
  if (name == "wait" || name == "groups" || name == "v6only" || name == "disable" || name == "dynamic_user")
    return yes_no();
  if (name == "instances" || name == "per_source")
    return v[0] == "UNLIMITED" || parse_uint(v[0], n) ? "" : "expected a number or UNLIMITED, not \"" + v[0] + "\"";
  if (name == "port") return parse_uint(v[0], n, 65535) ? "" : "bad port number \"" + v[0] + "\"";
  if (name == "nice") {
    std::string s = v[0][0] == '-' ? v[0].substr(1) : v[0];
    return parse_uint(s, n, 40) ? "" : "bad nice value \"" + v[0] + "\"";
  }
  if (name == "umask") {
    char* end = nullptr;
    long m = std::strtol(v[0].c_str(), &end, 8);
    return !v[0].empty() && !*end && m >= 0 && m <= 0777 ? "" : "bad umask \"" + v[0] + "\" (octal, at most 0777)";
  }
  if (name == "cps") {
    uint64_t a, b;
    return parse_uint(v[0], a) && parse_uint(v[1], b) ? "" : "cps expects two numbers";
  }
  if (name == "redirect") {
    if ((parse_uint(v[1], n, 65535) && n > 0) || service_port(v[1], "tcp")) return "";
    return "bad redirect port \"" + v[1] + "\"";
  }
  if (name.rfind("rlimit_", 0) == 0) {
    if (name == "rlimit_cpu")
      return v[0] == "UNLIMITED" || parse_uint(v[0], n, INT64_MAX) ? "" : "bad CPU limit \"" + v[0] + "\"";
    return valid_limit(v[0]) ? "" : "bad limit \"" + v[0] + "\"";
  }
  if (name == "flags" || name == "type") {
    const auto& k = name == "flags" ? kServiceFlags : kTypes;
    if (v.empty()) return "expects at least one value";
    for (const auto& x : v)
      if (!contains(k, x))
        return "bad " + std::string(name == "flags" ? "service flag" : "service type") + " \"" + x + "\"";
    return "";
  }
  if (name == "server_args" && v.empty()) return "expects at least one value";
  if (name == "access_times") {
    std::string norm;
    if (v.empty()) return "expects at least one value";
    for (const auto& t : v)
      if (!valid_time(t, norm)) return "bad time interval \"" + t + "\" (HH:MM-HH:MM)";
    return "";
  }
  if (name == "log_type") {
    if (v.empty()) return "expects at least one value";
    if (v[0] == "SYSLOG") {
      if (v.size() < 2 || v.size() > 3) return "SYSLOG expects a facility and an optional level";
      if (!kFacilities.count(v[1])) return "unknown syslog facility \"" + v[1] + "\"";
      if (v.size() == 3 && !kLevels.count(v[2])) return "unknown syslog level \"" + v[2] + "\"";
      return "";
    }
    if (v[0] == "FILE") {
      if (v.size() < 2 || v.size() > 4) return "FILE expects a path and optional soft and hard limits";
      for (size_t i = 2; i < v.size(); ++i)
        if (v[i] == "UNLIMITED" || !valid_limit(v[i])) return "bad log file limit \"" + v[i] + "\"";
      return "";
    }
    return "unknown log type \"" + v[0] + "\"";
  }
  if (name == "deny_time")
    return v[0] == "FOREVER" || v[0] == "NEVER" || parse_uint(v[0], n) ? "" : "bad deny_time \"" + v[0] + "\"";
  if (name == "max_load") return std::strtod(v[0].c_str(), nullptr) > 0 ? "" : "bad max_load \"" + v[0] + "\"";
  return "";
}

const char* comment_hint =
    " (xinetd reads '#' as a comment only at the start of a line; move the comment to a line of "
    "its own)";

class Applier {
 public:
  Applier(std::vector<Warning>& out) : out_(out) {}
  void apply(State& st, const Entry& e, const Attr& a, bool defaults);

 private:
  void warn(const std::string& file, uint32_t line, const std::string& attr, const std::string& msg) {
    out_.push_back({file, line, attr, msg});
  }
  void refuse(State& st, uint32_t line, const std::string& why) {
    if (st.refused.empty()) {
      st.refused = why;
      st.refused_line = line;
    }
  }
  void apply_list(State& st, const Entry& e, const Attr& a, bool defaults, List& list);

  std::vector<Warning>& out_;
};

void Applier::apply_list(State& st, const Entry& e, const Attr& a, bool defaults, List& list) {
  Op op = a.op;
  if (defaults && op == Op::set) op = Op::add;  // in defaults{}, '=' means '+=' (parse.c)
  std::vector<std::string> values;
  if (a.name == "only_from" || a.name == "no_access") {
    for (size_t i = 0; i < a.values.size(); ++i) {
      if (a.comment_at >= 0 && static_cast<int>(i) >= a.comment_at) break;  // not looked up as host names
      auto r = parse_access_address(a.values[i]);
      if (r.status == AddrResult::Status::error) {
        warn(e.file, a.line, a.name,
             r.note +
                 (defaults ? "; xinetd refuses to start with this defaults section" : "; xinetd disables the service"));
        if (!defaults) refuse(st, a.line, "xinetd disables this service: bad address in " + a.name);
      } else if (!r.note.empty()) {
        std::string extra = r.status == AddrResult::Status::ignored && a.name == "no_access"
                                ? " (this no_access entry is lost: the service admits more than intended)"
                                : "";
        warn(e.file, a.line, a.name, r.note + extra);
      }
      for (auto& c : r.cidrs) values.push_back(std::move(c));
    }
  } else if (a.name == "log_on_success" || a.name == "log_on_failure") {
    const auto& known = a.name == "log_on_success" ? kSuccessFlags : kFailureFlags;
    for (const auto& v : a.values) {
      if (!contains(known, v)) {
        warn(e.file, a.line, a.name,
             "bad flag \"" + v + "\": xinetd " + (defaults ? std::string("refuses to start") : "disables the service"));
        if (!defaults) refuse(st, a.line, "xinetd disables this service: bad flag in " + a.name);
        continue;
      }
      if (v == "RECORD") {
        warn(e.file, a.line, a.name, "RECORD is not carried over (superd has no such record)");
        continue;
      }
      values.push_back(v);
    }
  } else if (a.name == "env") {
    if (op == Op::remove) {
      warn(e.file, a.line, a.name, "xinetd does not support -= for env and disables the service");
      refuse(st, a.line, "xinetd disables this service: env -=");
      return;
    }
    for (const auto& v : a.values) {
      if (v.find('=') == std::string::npos || v[0] == '=') {
        warn(e.file, a.line, a.name, "\"" + v + "\" has no '=': xinetd disables the service");
        refuse(st, a.line, "xinetd disables this service: bad env value");
        continue;
      }
      values.push_back(v);
    }
  } else {
    values = a.values;
  }
  if (op == Op::set) {
    list.items.clear();
    list.index.clear();
  }
  if (op == Op::remove) {
    // One pass over the list for the whole line, and only if a value is actually in it.
    std::unordered_set<std::string> gone;
    for (const auto& v : values)
      if (list.index.erase(v)) gone.insert(v);
    if (!gone.empty())
      list.items.erase(std::remove_if(list.items.begin(), list.items.end(),
                                      [&](const std::string& x) { return gone.count(x) != 0; }),
                       list.items.end());
  } else {
    for (auto& v : values) {
      // env keeps repeats (xinetd passes each one); every other list keeps the first of each.
      bool fresh = list.index.insert(v).second;
      if (fresh || a.name == "env") list.items.push_back(std::move(v));
    }
  }
  list.present = true;
  list.line = defaults ? 0 : a.line;
}

void Applier::apply(State& st, const Entry& e, const Attr& a_in, bool defaults) {
  Attr a = a_in;
  const std::string where = defaults ? "the defaults section" : "service " + e.name;
  const Spec* spec = find_spec(a.name);
  int n = spec ? (defaults ? spec->defaults_n : spec->service_n) : 0;
  if (!spec) {
    std::string why = a.name == "mdns" ? "mdns (service announcement) is not supported by superd (nor by Debian's "
                                         "xinetd build, which ignores it)"
                                       : "unknown attribute: xinetd ignores it (bad service attribute)";
    warn(e.file, a.line, a.name, why);
    return;
  }
  if (n == 0) {
    warn(e.file, a.line, a.name,
         defaults ? "not allowed in the defaults section: xinetd ignores it there"
                  : "only allowed in the defaults section: xinetd ignores it here");
    return;
  }
  if (a.comment_at >= 0) {
    std::string text;
    for (size_t i = static_cast<size_t>(a.comment_at); i < a.values.size(); ++i)
      text += (text.empty() ? "" : " ") + a.values[i];
    warn(e.file, a.line, a.name,
         "probable inline comment \"" + text + "\": its words count as values, as in xinetd" + comment_hint);
  }
  if (n == -2) {
    List* list = a.name == "only_from"        ? &st.only_from
                 : a.name == "no_access"      ? &st.no_access
                 : a.name == "log_on_success" ? &st.log_on_success
                 : a.name == "log_on_failure" ? &st.log_on_failure
                 : a.name == "env"            ? &st.env
                 : a.name == "passenv"        ? &st.passenv
                 : a.name == "enabled"        ? &st.enabled
                 : a.name == "disabled"       ? &st.disabled
                                              : nullptr;
    if (list) {
      apply_list(st, e, a, defaults, *list);
      return;
    }
    // log_type in defaults{} is the only other one: a plain value there.
  }
  std::string key = a.name == "interface" ? "bind" : a.name;
  if (a.op != Op::set && n != -2) {
    warn(e.file, a.line, a.name,
         std::string("operator '") + (a.op == Op::add ? "+=" : "-=") +
             "' is only for cumulative attributes (only_from, no_access, log_on_success, "
             "log_on_failure, passenv, env): xinetd ignores this line; converted as '='");
    a.op = Op::set;
  }
  if (n != -2) {
    if (auto it = st.single.find(key); it != st.single.end()) {
      warn(e.file, a.line, a.name,
           "already set on line " + std::to_string(it->second.line) +
               ": xinetd keeps the first value and ignores this line");
      return;
    }
  }
  if (n > 0 && a.values.size() != static_cast<size_t>(n)) {
    std::string msg = "expects " + std::to_string(n) + (n == 1 ? " value" : " values") + " but " +
                      std::to_string(a.values.size()) +
                      " were given: xinetd ignores the attribute, and so does the conversion";
    warn(e.file, a.line, a.name, msg);
    return;
  }
  if (std::string why = check_single(a.name, a.values); !why.empty()) {
    if (defaults) {
      warn(e.file, a.line, a.name, why + ": xinetd refuses to start with this defaults section; ignored");
    } else {
      warn(e.file, a.line, a.name, why + ": xinetd disables the service");
      refuse(st, a.line, "xinetd disables this service: bad " + a.name);
    }
    return;
  }
  // Attributes that are accepted but do not carry over.
  static const std::map<std::string, std::string> kDropped{
      {"max_load", "not carried over: superd does not refuse connections by load average"},
      {"libwrap", "not carried over: superd has no libwrap (tcpd) support; use allow/deny"},
      {"deny_time", "not carried over: superd has no SENSOR blacklist"},
      {"rpc_version", "not carried over: superd serves no RPC services"},
      {"rpc_number", "not carried over: superd serves no RPC services"},
  };
  if (auto it = kDropped.find(a.name); it != kDropped.end()) warn(e.file, a.line, a.name, it->second);
  if (a.name == "cps")
    warn(e.file, a.line, a.name,
         "the second value (" + a.values[1] +
             " s with the service disabled) is not carried over: superd defers accepting "
             "instead, and never disables the service");
  st.single.insert_or_assign(key, std::move(a));  // a repeated log_type in defaults{}: the last
}

}  // namespace

bool inherited(const std::string& name) {
  static const std::set<std::string> k{"instances",      "per_source",  "groups",      "cps",      "max_load",
                                       "bind",           "v6only",      "umask",       "log_type", "banner",
                                       "banner_success", "banner_fail", "dynamic_user"};
  return k.count(name) > 0;
}

bool valid_time(const std::string& t, std::string& norm) {
  // HH:MM-HH:MM (xinetd also takes single-digit hours)
  auto dash = t.find('-');
  if (dash == std::string::npos) return false;
  std::string out;
  for (std::string part : {t.substr(0, dash), t.substr(dash + 1)}) {
    auto colon = part.find(':');
    if (colon == std::string::npos) return false;
    uint64_t h, m;
    if (!parse_uint(part.substr(0, colon), h, 23) || !parse_uint(part.substr(colon + 1), m, 59)) return false;
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02u:%02u", static_cast<unsigned>(h), static_cast<unsigned>(m));
    out += (out.empty() ? "" : "-") + std::string(buf);
  }
  norm = out;
  return true;
}

void apply_attribute(State& st, const Entry& e, const Attr& a, bool defaults, std::vector<Warning>& warnings) {
  Applier(warnings).apply(st, e, a, defaults);
}

}  // namespace superd::xinetd::detail
