// inetd.conf lines (openbsd-inetd, Debian's inetd):
//   [addr:]service socket_type proto wait|nowait[.max] user[.group|:group] program [argv0 args...]
// "internal" as the program names a builtin; tcp/udp (and tcp4/udp4) listen on IPv4, tcp6/udp6
// on IPv6 only, tcp46/udp46 on both. nowait.max is at most max starts per minute.
#include <sys/socket.h>

#include <algorithm>

#include "xinetd/addr.hpp"
#include "xinetd/model.hpp"
#include "xinetd/parse.hpp"

namespace superd::xinetd::detail {

std::optional<Built> build_inetd(const Entry& e, std::vector<Warning>& warnings) {
  const auto& f = e.fields;
  auto warn = [&](const std::string& attr, const std::string& msg) { warnings.push_back({e.file, e.line, attr, msg}); };
  auto skip = [&](const std::string& attr, const std::string& why) -> std::optional<Built> {
    warn(attr, why + "; inetd.conf line not converted");
    return std::nullopt;
  };
  // [addr:]service
  std::string service = f[0], addr;
  if (service[0] == '[') {
    auto close = service.find("]:");
    if (close == std::string::npos) return skip(f[0], "bad address in \"" + f[0] + "\"");
    addr = service.substr(1, close - 1);
    service = service.substr(close + 2);
  } else if (auto colon = service.rfind(':'); colon != std::string::npos) {
    addr = service.substr(0, colon);
    service = service.substr(colon + 1);
  }
  if (addr == "*") addr.clear();
  const std::string& socket_type = f[1];
  std::string proto = f[2];
  if (proto.rfind("rpc/", 0) == 0 || service.find('/') != std::string::npos)
    return skip(service, "RPC services are not supported by superd");
  if (socket_type != "stream" && socket_type != "dgram")
    return skip(service, "socket type " + socket_type + " is not supported by superd");
  std::string family;  // "", "4", "6", "46"
  std::string base = proto;
  for (const char* suffix : {"46", "4", "6"})
    if (base.size() > 3 && base.substr(3) == suffix) {
      family = suffix;
      base = base.substr(0, 3);
      break;
    }
  if (base != "tcp" && base != "udp") return skip(service, "protocol " + proto + " is not supported by superd");
  const bool dgram = socket_type == "dgram";
  if ((base == "udp") != dgram) {
    warn(service, "protocol " + proto + " does not go with socket type " + socket_type + "; superd uses " +
                      (dgram ? "udp" : "tcp"));
    base = dgram ? "udp" : "tcp";
  }
  uint16_t port = 0;
  if (all_digits(service) && service.size() <= 5 && std::stoul(service) <= 65535) {
    port = static_cast<uint16_t>(std::stoul(service));
  } else if (auto p = service_port(service, base)) {
    port = *p;
  } else {
    return skip(service, service + "/" + base + " is not in /etc/services");
  }
  std::string listen;
  if (!addr.empty()) {
    auto a = numeric_address(addr);
    if (!a) {
      auto found = resolve_host(addr, family == "6" ? AF_INET6 : AF_INET);
      if (found.empty()) return skip(service, "cannot resolve \"" + addr + "\"");
      a = found.front();
      warn(service, "host name \"" + addr + "\" resolved now to " + *a);
    }
    listen = host_port(*a, port);
  } else if (family == "6") {
    listen = "[::]:" + std::to_string(port);
  } else if (family == "46") {
    listen = std::to_string(port);
  } else {
    listen = "0.0.0.0:" + std::to_string(port);
  }

  Socket s;
  Program p;
  s.l_listen = p.l_program = p.l_user = p.l_group = s.l_accept = s.l_rate = e.line;
  (dgram ? s.listen_datagram : s.listen).push_back(listen);
  // wait|nowait[.max]
  std::string wait = f[3], max;
  if (auto dot = wait.find('.'); dot != std::string::npos) {
    max = wait.substr(dot + 1);
    wait = wait.substr(0, dot);
  }
  if (wait != "wait" && wait != "nowait") return skip(service, "expected wait or nowait, not \"" + f[3] + "\"");
  const bool internal = f[5] == "internal";
  if (!max.empty()) {
    if (!all_digits(max) || max.size() > 7) return skip(service, "bad rate \"" + max + "\" after " + wait);
    if (std::stoull(max) > 0) {
      s.max_connection_rate = std::stoull(max);
      s.rate_interval = "1min";
      s.rate_comment = "inetd's " + f[3] + " stopped the service for 10 minutes when exceeded; superd defers instead";
    }
  }
  if (!internal && (wait == "wait" || dgram)) {
    if (wait == "nowait")
      warn(service, "superd serves datagram sockets in wait mode only: converted with accept = false");
    s.accept = false;
  }
  for (size_t i = 6; i < f.size(); ++i)
    if (f[i][0] == '#') {
      std::string text;
      for (size_t k = i; k < f.size(); ++k) text += (text.empty() ? "" : " ") + f[k];
      warn(service, "probable inline comment \"" + text +
                        "\": inetd reads '#' as a comment only at the start of a "
                        "line, so its words are passed to the server as arguments");
      break;
    }
  if (internal) {
    if (!is_internal_service(service))
      return skip(service,
                  "internal service " + service + " is not one superd serves (echo, discard, daytime, chargen, time)");
    p.internal = service;
  } else {
    // user[.group] or user[:group]
    std::string user = f[4], group;
    auto sep = user.find(':');
    if (sep == std::string::npos) sep = user.find('.');
    if (sep != std::string::npos) {
      group = user.substr(sep + 1);
      user = user.substr(0, sep);
    }
    p.user = user;
    if (!group.empty()) p.group = group;
    const std::string& program = f[5];
    std::vector<std::string> args(f.begin() + 6, f.end());
    auto slash = program.rfind('/');
    std::string basename = slash == std::string::npos ? program : program.substr(slash + 1);
    if (args.empty()) {
      p.exec = {program};
    } else if (args[0] == basename) {
      p.exec = {program};
      p.exec.insert(p.exec.end(), args.begin() + 1, args.end());
    } else {
      p.exec = {"@" + program};
      p.exec.insert(p.exec.end(), args.begin(), args.end());
    }
  }
  Built b;
  b.kind = dgram ? "dgram" : "stream";
  b.file.name = service;
  b.file.origin_file = e.file;
  b.file.origin_line = e.line;
  std::string header = "converted by superd import-xinetd from " + e.file + ":" + std::to_string(e.line);
  b.file.toml = write_service(header, {"inetd.conf line"}, s, p, e.line, b.file.line_origin);
  return b;
}

}  // namespace superd::xinetd::detail
