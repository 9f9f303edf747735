// The [socket] table: listeners, admission limits, access times, rate limits, banners (read
// from disk here, at load) and the socket's owner and mode.
#include <grp.h>
#include <pwd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include "admission/access_times.hpp"
#include "config/tables.hpp"

namespace superd::config::detail {

namespace {
// A number as a user or group: at most 4294967294 (-1 is no ID). nullopt for a larger one, which
// stoul would have thrown on (found by fuzz_xinetd), so that it is reported as no such user.
std::optional<uint32_t> numeric_id(const std::string& s, bool& numeric) {
  numeric = !s.empty() && std::all_of(s.begin(), s.end(), ::isdigit);
  if (!numeric) return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > 0xFFFFFFFEull) return std::nullopt;
  return static_cast<uint32_t>(v);
}
}  // namespace

std::optional<uid_t> resolve_user(const std::string& s) {
  bool numeric = false;
  if (auto id = numeric_id(s, numeric); numeric) return id;
  if (passwd* pw = getpwnam(s.c_str())) return pw->pw_uid;
  return std::nullopt;
}
std::optional<gid_t> resolve_group(const std::string& s) {
  bool numeric = false;
  if (auto id = numeric_id(s, numeric); numeric) return id;
  if (group* gr = getgrnam(s.c_str())) return gr->gr_gid;
  return std::nullopt;
}

namespace {

// proxy_protocol, proxy_allow, proxy_timeout, proxy_max_tlv: the header is read by the daemon
// (daemon/proxy.cpp) only from the proxies proxy_allow names, so the list is required.
void read_proxy(TableReader& r, SocketConfig& s) {
  std::string mode;
  const toml::node* on = r.get("proxy_protocol");
  if (r.read_string("proxy_protocol", mode)) {
    if (mode == "v1")
      s.proxy_protocol = proxy::Versions::v1;
    else if (mode == "v2")
      s.proxy_protocol = proxy::Versions::v2;
    else if (mode == "any")
      s.proxy_protocol = proxy::Versions::any;
    else
      r.bad(*on, "proxy_protocol", "expected \"v1\", \"v2\" or \"any\"");
  }
  for (auto& [text, node] : r.read_strings("proxy_allow", false)) {
    std::string why;
    if (text == "unix") {
      s.proxy_allow_unix = true;
    } else if (text.starts_with("uid:")) {
      std::string n = text.substr(4);
      if (n.empty() || n.size() > 10 || !std::all_of(n.begin(), n.end(), ::isdigit) || std::stoull(n) > 0xFFFFFFFEull)
        r.bad(*node, "proxy_allow", "\"" + text + "\": expected uid:N with N a UID");
      else
        s.proxy_allow_uids.push_back(static_cast<uid_t>(std::stoul(n)));
    } else if (auto c = net::parse_cidr(text, why)) {
      s.proxy_allow.push_back(*c);
    } else {
      r.bad(*node, "proxy_allow", why + " (or \"unix\", \"uid:N\" for a UNIX listener's proxy)");
    }
  }
  r.read_duration("proxy_timeout", s.proxy_timeout);
  if (auto* n = r.get("proxy_timeout");
      n && (s.proxy_timeout.count() <= 0 || s.proxy_timeout > std::chrono::minutes(1)))
    r.bad(*n, "proxy_timeout", "must be longer than 0 and at most 60s");
  r.read_int("proxy_max_tlv", s.proxy_max_tlv, 0, static_cast<int64_t>(proxy::kMaxTlvCap));
  if (!s.proxy_protocol) {
    for (const char* key : {"proxy_allow", "proxy_timeout", "proxy_max_tlv"})
      if (auto* n = r.get(key)) r.bad(*n, key, "needs proxy_protocol = \"v1\", \"v2\" or \"any\"");
    return;
  }
  if (s.proxy_allow.empty() && s.proxy_allow_uids.empty() && !s.proxy_allow_unix)
    r.bad(*on, "proxy_protocol",
          "needs proxy_allow, the proxies trusted to send a header (CIDRs, \"unix\", \"uid:N\")");
  if (!s.accept) r.bad(*on, "proxy_protocol", "needs accept = true: in wait mode the service accepts, not superd");
  for (const Listen& l : s.listen)
    if (l.datagram) {
      r.bad(*on, "proxy_protocol", "PROXY headers come on stream connections, not on listen_datagram");
      break;
    }
}

}  // namespace

void read_socket(TableReader& r, SocketConfig& s) {
  for (auto& [text, node] : r.read_strings("listen", true)) {
    std::string why;
    if (auto spec = net::parse_listen(text, why))
      s.listen.push_back({*spec, r.where(*node)});
    else
      r.bad(*node, "listen", why);
  }
  for (auto& [text, node] : r.read_strings("listen_datagram", true)) {
    std::string why;
    auto spec = net::parse_listen(text, why);
    if (spec && spec->is_unix())
      r.bad(*node, "listen_datagram", "\"" + text + "\": a datagram listener takes PORT, ADDR:PORT or [V6]:PORT");
    else if (spec)
      s.listen.push_back({*spec, r.where(*node), true});
    else
      r.bad(*node, "listen_datagram", why);
  }
  r.read_bool("accept", s.accept);
  r.read_int("max_connections", s.limits.max_connections, 1, kMaxConnectionsCap);
  r.read_int("max_connections_per_source", s.limits.max_per_source, 0, kMaxConnectionsCap);
  for (const char* key : {"allow", "deny"}) {
    auto& list = std::string(key) == "allow" ? s.limits.allow : s.limits.deny;
    for (auto& [text, node] : r.read_strings(key, false)) {
      std::string why;
      if (auto c = net::parse_cidr(text, why))
        list.push_back(*c);
      else
        r.bad(*node, key, why);
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
      if (v.empty() || *end || m > 07777)
        r.bad(*n, "socket_mode", "bad mode \"" + v + "\" (octal, e.g. \"0660\")");
      else
        s.socket_mode = static_cast<mode_t>(m);
    } else {
      r.wrong_type(*n, "socket_mode", "an octal string such as \"0660\"");
    }
  }
  std::string v6;
  if (r.read_string("bind_ipv6_only", v6)) {
    if (v6 == "both")
      s.bind_ipv6_only = BindIpv6Only::both;
    else if (v6 == "ipv6-only")
      s.bind_ipv6_only = BindIpv6Only::ipv6_only;
    else if (v6 == "default")
      s.bind_ipv6_only = BindIpv6Only::default_;
    else
      r.bad(*r.get("bind_ipv6_only"), "bind_ipv6_only", "expected \"both\", \"ipv6-only\" or \"default\"");
  }
  r.read_bool("no_delay", s.no_delay);
  r.read_bool("keep_alive", s.keep_alive);
  r.read_int("max_connection_rate", s.max_connection_rate, 0, kMaxConnectionsCap);
  r.read_duration("connection_rate_interval", s.connection_rate_interval);
  if (auto* n = r.get("connection_rate_interval"); n && s.connection_rate_interval.count() == 0)
    r.bad(*n, "connection_rate_interval", "must be longer than 0");
  std::string action;
  if (r.read_string("connection_rate_action", action)) {
    if (action == "defer")
      s.connection_rate_action = RateAction::defer;
    else if (action == "refuse")
      s.connection_rate_action = RateAction::refuse;
    else
      r.bad(*r.get("connection_rate_action"), "connection_rate_action", "expected \"defer\" or \"refuse\"");
  }
  r.read_int("datagram_reply_rate", s.datagram_reply_rate, 0, kMaxConnectionsCap);
  r.read_int("datagram_reply_rate_per_source", s.datagram_reply_rate_per_source, 0, kMaxConnectionsCap);
  for (auto [key, interval] :
       {std::pair{"datagram_reply_interval", &s.datagram_reply_interval},
        std::pair{"datagram_reply_interval_per_source", &s.datagram_reply_interval_per_source}}) {
    r.read_duration(key, *interval);
    if (auto* n = r.get(key); n && interval->count() == 0) r.bad(*n, key, "must be longer than 0");
  }
  std::vector<std::string> times;
  for (auto& [text, node] : r.read_strings("access_times", true)) times.push_back(text);
  if (auto* n = r.get("access_times")) {
    std::string why;
    if (auto at = admission::AccessTimes::parse(times, why))
      s.access_times = std::move(*at);
    else
      r.bad(*n, "access_times", why);
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
  read_proxy(r, s);
  std::string user, group;
  if (r.read_string("socket_user", user)) {
    if (!(s.socket_user = resolve_user(user)))
      r.bad(*r.get("socket_user"), "socket_user", "no such user \"" + user + "\"");
  }
  if (r.read_string("socket_group", group)) {
    if (!(s.socket_group = resolve_group(group)))
      r.bad(*r.get("socket_group"), "socket_group", "no such group \"" + group + "\"");
  }
  r.finish();
}

}  // namespace superd::config::detail
