// The TOML side of the importer: superd service files written in a fixed key order, each line
// tagged with the xinetd line it came from, and the system lookups both formats share.
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>

#include <algorithm>
#include <cstdio>

#include "inloop/internal_service.hpp"
#include "xinetd/model.hpp"

namespace superd::xinetd {

std::string Warning::to_string() const {
  return file + ":" + std::to_string(line) + ": " + attribute + ": warning: " + message;
}

namespace detail {

bool is_internal_service(const std::string& name) {
  return inloop::parse_internal(name).has_value();
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t utf8_len(const std::string& s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) >> 6) != 2) return 0;
  if (n == 2 && c < 0xC2) return 0;  // overlong
  return n;
}

}  // namespace

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", c);
      out += buf;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (size_t n = utf8_len(s, i)) {
      out.append(s, i, n);
      i += n;
      continue;
    } else {
      out += "\\uFFFD";
    }
    ++i;
  }
  return out + "\"";
}

std::string toml_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + toml_string(items[i]);
  return out + "]";
}

void TomlWriter::comment(const std::string& text, uint32_t from) {
  // A comment holds file names and values from the input: keep it one line of valid UTF-8.
  std::string clean = "# ";
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n = utf8_len(text, i);
    if (n == 0 || (c < 0x20 && c != '\t') || c == 0x7F) {
      clean += '?';
      ++i;
    } else {
      clean.append(text, i, n);
      i += n;
    }
  }
  line(clean, from);
}

void TomlWriter::line(const std::string& text, uint32_t from) {
  text_ += text;
  text_ += '\n';
  origin_.push_back(from);
}

// What the converted file of a service that ran as root says above its user line.
constexpr const char* kRootNotes[] = {
    "runs as root without a sandbox, as under xinetd. dynamic_user = true (superd's default) would",
    "likely break it: programs run as root read root-only files (host keys, /etc/shadow) or switch",
    "to the user who logs in (telnetd, sshd, ftpd, cvs pserver), and a dynamic user can do neither.",
    "To confine it as root: protect_system = \"strict\", protect_home = \"read-only\", private_tmp = true,",
    "private_devices = true, capability_bounding_set = [only the capabilities it needs].",
};

std::string write_service(const std::string& header, const std::vector<std::string>& notes, const Socket& s,
                          const Program& p, uint32_t origin_line, std::vector<uint32_t>& line_origin) {
  TomlWriter w;
  w.comment(header, origin_line);
  for (const auto& n : notes) w.comment(n, origin_line);
  w.line("[socket]", origin_line);
  if (!s.listen.empty()) w.key("listen", toml_array(s.listen), s.l_listen);
  if (!s.listen_datagram.empty()) w.key("listen_datagram", toml_array(s.listen_datagram), s.l_listen);
  if (s.bind_ipv6_only) w.key("bind_ipv6_only", toml_string(*s.bind_ipv6_only), s.l_v6);
  auto boolean = [](bool b) { return std::string(b ? "true" : "false"); };
  if (s.accept) w.key("accept", boolean(*s.accept), s.l_accept);
  if (s.no_delay) w.key("no_delay", boolean(*s.no_delay), s.l_nodelay);
  if (s.keep_alive) w.key("keep_alive", boolean(*s.keep_alive), s.l_keepalive);
  if (s.max_connections) w.key("max_connections", std::to_string(*s.max_connections), s.l_max);
  if (s.max_connections_per_source)
    w.key("max_connections_per_source", std::to_string(*s.max_connections_per_source), s.l_per_source);
  if (s.max_connection_rate) {
    w.key("max_connection_rate", std::to_string(*s.max_connection_rate), s.l_rate);
    w.key("connection_rate_interval", toml_string(s.rate_interval), s.l_rate);
    w.key("connection_rate_action", toml_string("defer"), s.l_rate);
    if (!s.rate_comment.empty()) w.comment(s.rate_comment, s.l_rate);
  }
  if (s.allow) w.key("allow", toml_array(*s.allow), s.l_allow);
  if (!s.deny_comment.empty()) w.comment(s.deny_comment, s.l_deny);
  if (s.deny) w.key("deny", toml_array(*s.deny), s.l_deny);
  if (s.access_times) w.key("access_times", toml_array(*s.access_times), s.l_times);
  if (s.banner) w.key("banner", toml_string(*s.banner), s.l_banner);
  if (s.banner_success) w.key("banner_success", toml_string(*s.banner_success), s.l_banner_success);
  if (s.banner_fail) w.key("banner_fail", toml_string(*s.banner_fail), s.l_banner_fail);

  w.blank();
  w.line("[service]", origin_line);
  if (!p.disabled_reason.empty()) {
    w.comment(p.disabled_reason, p.l_disabled);
    w.key("disabled", "true", p.l_disabled);
  }
  if (p.internal)
    w.key("internal", toml_string(*p.internal), p.l_program);
  else if (p.redirect)
    w.key("redirect", toml_string(*p.redirect), p.l_program);
  else
    w.key("exec", toml_array(p.exec), p.l_program);
  if (p.dynamic) {
    w.comment("dynamic_user = yes: a fresh UID per connection, in the sandbox" +
                  (p.user ? " (instead of xinetd's user = " + *p.user + ")" : std::string()),
              p.l_dynamic);
  } else if (p.user && (*p.user == "root" || *p.user == "0")) {
    // A root service: superd's default would likely break it; say why, and what confines it.
    w.key("dynamic_user", "false", p.l_user);
    for (const char* line : kRootNotes) w.comment(line, p.l_user);
    w.key("user", toml_string(*p.user), p.l_user);
  } else if (p.user) {
    w.key("dynamic_user", "false", p.l_user);
    w.comment("dynamic_user = true   # superd's default: a fresh UID per connection instead of user " + *p.user,
              p.l_user);
    w.key("user", toml_string(*p.user), p.l_user);
  }
  if (p.group) w.key("group", toml_string(*p.group), p.l_group);
  if (p.supplementary_groups) w.key("supplementary_groups", toml_array(*p.supplementary_groups), p.l_groups);
  if (p.umask) w.key("umask", toml_string(*p.umask), p.l_umask);
  if (p.nice) w.key("nice", std::to_string(*p.nice), p.l_nice);
  if (p.environment_set) w.key("environment", toml_array(p.environment), p.l_env);
  if (p.pass_environment_set) w.key("pass_environment", toml_array(p.pass_environment), p.l_passenv);
  if (!p.limits.empty()) {
    // One line per limit would need a [service.limits] table; an inline table keeps the
    // [service] keys together. Its source line is the first limit's.
    std::string t = "{ ";
    for (size_t i = 0; i < p.limits.size(); ++i) t += (i ? ", " : "") + p.limits[i].key + " = " + p.limits[i].value;
    w.key("limits", t + " }", p.limits.front().line);
  }
  if (p.log_target) w.key("log_target", toml_string(*p.log_target), p.l_log_target);
  if (p.log_on_success) w.key("log_on_success", toml_array(*p.log_on_success), p.l_success);
  if (p.log_on_failure) w.key("log_on_failure", toml_array(*p.log_on_failure), p.l_failure);
  line_origin = w.origin();
  return w.text();
}

std::optional<std::vector<std::string>> supplementary_groups_of(const std::string& user) {
  passwd* pw = all_digits(user) ? ::getpwuid(static_cast<uid_t>(std::stoul(user))) : ::getpwnam(user.c_str());
  if (!pw) return std::nullopt;
  gid_t primary = pw->pw_gid;
  std::string name = pw->pw_name;
  int n = 64;
  std::vector<gid_t> gids(static_cast<size_t>(n));
  while (::getgrouplist(name.c_str(), primary, gids.data(), &n) < 0) {
    if (n > 65536) return std::nullopt;
    gids.resize(static_cast<size_t>(n));
  }
  gids.resize(static_cast<size_t>(n));
  std::vector<std::string> out;
  for (gid_t g : gids) {
    if (g == primary) continue;
    group* gr = ::getgrgid(g);
    std::string gname = gr ? gr->gr_name : std::to_string(g);
    if (std::find(out.begin(), out.end(), gname) == out.end()) out.push_back(gname);
  }
  return out;
}

std::optional<uint16_t> service_port(const std::string& name, const std::string& proto) {
  servent* se = ::getservbyname(name.c_str(), proto.c_str());
  if (!se) return std::nullopt;
  return ntohs(static_cast<uint16_t>(se->s_port));
}

std::string host_port(const std::string& addr, uint16_t port) {
  if (addr.find(':') != std::string::npos) return "[" + addr + "]:" + std::to_string(port);
  return addr + ":" + std::to_string(port);
}

}  // namespace detail
}  // namespace superd::xinetd
