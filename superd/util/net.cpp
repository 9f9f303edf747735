#include "util/net.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace superd::util::net {
namespace {

bool parse_port(std::string_view s, uint16_t& port) {
  unsigned v = 0;
  if (s.empty() || s.size() > 5) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

bool is_v4_mapped(const in6_addr& a) {
  return IN6_IS_ADDR_V4MAPPED(&a);
}

}  // namespace

bool ListenSpec::is_wildcard() const {
  if (kind == Kind::dual) return true;
  if (kind == Kind::inet4) return reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (kind == Kind::inet6) return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr);
  return false;
}

bool ListenSpec::conflicts_with(const ListenSpec& o) const {
  if (is_unix() || o.is_unix()) return kind == o.kind && path == o.path;
  if (port != o.port) return false;
  if (kind == Kind::dual || o.kind == Kind::dual) return true;  // [::] dual-stack takes the port on both
  if (kind != o.kind) return false;
  if (is_wildcard() || o.is_wildcard()) return true;
  return addr_len == o.addr_len && std::memcmp(&addr, &o.addr, addr_len) == 0;
}

std::string ListenSpec::to_string() const {
  switch (kind) {
    case Kind::unix_path:
      return path;
    case Kind::unix_abstract:
      return "@" + path;
    case Kind::dual:
      return "*:" + std::to_string(port);
    case Kind::inet4:
      return address_string(reinterpret_cast<const sockaddr*>(&addr)) + ":" + std::to_string(port);
    case Kind::inet6:
      return "[" + address_string(reinterpret_cast<const sockaddr*>(&addr)) + "]:" + std::to_string(port);
  }
  return {};
}

std::optional<ListenSpec> parse_listen(std::string_view s, std::string& why) {
  ListenSpec out;
  if (s.empty()) {
    why = "empty address";
    return std::nullopt;
  }
  if (s.front() == '/' || s.front() == '@') {
    bool abstract = s.front() == '@';
    std::string_view name = abstract ? s.substr(1) : s;
    // sun_path holds 108 bytes: a path needs its NUL, an abstract name its leading NUL.
    if (name.empty() || name.size() >= sizeof(sockaddr_un::sun_path)) {
      why = "UNIX socket name must be 1.." + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes";
      return std::nullopt;
    }
    if (name.find('\0') != std::string_view::npos) {
      why = "UNIX socket name contains NUL";
      return std::nullopt;
    }
    out.kind = abstract ? Kind::unix_abstract : Kind::unix_path;
    out.path = std::string(name);
    auto* un = reinterpret_cast<sockaddr_un*>(&out.addr);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path + (abstract ? 1 : 0), name.data(), name.size());
    out.addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
    return out;
  }
  std::string_view host, port_s;
  if (s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      why = "expected \"[IPV6]:PORT\"";
      return std::nullopt;
    }
    host = s.substr(1, close - 1);
    port_s = s.substr(close + 2);
    out.kind = Kind::inet6;
  } else if (auto colon = s.rfind(':'); colon != std::string_view::npos) {
    host = s.substr(0, colon);
    port_s = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      why = "IPv6 addresses need brackets: \"[ADDR]:PORT\"";
      return std::nullopt;
    }
    out.kind = Kind::inet4;
  } else {
    port_s = s;
    out.kind = Kind::dual;
  }
  if (!parse_port(port_s, out.port)) {
    why = "bad port \"" + std::string(port_s) + "\" (1..65535)";
    return std::nullopt;
  }
  std::string h(host);
  if (out.kind == Kind::inet4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out.addr);
    in->sin_family = AF_INET;
    in->sin_port = htons(out.port);
    if (inet_pton(AF_INET, h.c_str(), &in->sin_addr) != 1) {
      why = "bad IPv4 address \"" + h + "\"";
      return std::nullopt;
    }
    out.addr_len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(out.port);
    if (out.kind == Kind::dual) {
      in6->sin6_addr = in6addr_any;
    } else if (inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) != 1) {
      why = "bad IPv6 address \"" + h + "\"";
      return std::nullopt;
    }
    out.addr_len = sizeof(sockaddr_in6);
  }
  return out;
}

std::optional<Cidr> parse_cidr(std::string_view s, std::string& why) {
  Cidr c;
  std::string addr(s.substr(0, s.find('/')));
  bool has_prefix = s.find('/') != std::string_view::npos;
  if (inet_pton(AF_INET, addr.c_str(), c.bytes.data()) == 1) {
    c.family = AF_INET;
    c.prefix = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.bytes.data()) == 1) {
    c.family = AF_INET6;
    c.prefix = 128;
  } else {
    why = "bad address \"" + addr + "\" in CIDR \"" + std::string(s) + "\"";
    return std::nullopt;
  }
  if (has_prefix) {
    std::string_view p = s.substr(s.find('/') + 1);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || v > c.prefix) {
      why = "bad prefix length in \"" + std::string(s) + "\" (0.." + std::to_string(c.prefix) + ")";
      return std::nullopt;
    }
    c.prefix = v;
  }
  return c;
}

bool Cidr::contains(const sockaddr* sa) const {
  const uint8_t* b = nullptr;
  if (sa->sa_family == AF_INET) {
    if (family != AF_INET) return false;
    b = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
  } else if (sa->sa_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (family == AF_INET) {
      if (!is_v4_mapped(a6)) return false;
      b = reinterpret_cast<const uint8_t*>(&a6) + 12;
    } else {
      b = reinterpret_cast<const uint8_t*>(&a6);
    }
  } else {
    return false;
  }
  unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(b, bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (b[full] & mask) == (bytes[full] & mask);
}

std::string address_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (is_v4_mapped(a6))
      inet_ntop(AF_INET, reinterpret_cast<const uint8_t*>(&a6) + 12, buf, sizeof buf);
    else
      inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  } else if (sa->sa_family == AF_UNIX) {
    return "unix";
  }
  return buf;
}

uint16_t address_port(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return 0;
}

SourceKey source_key(const sockaddr* sa) {
  SourceKey k;
  if (sa->sa_family == AF_INET) {
    k.bytes[0] = 4;
    std::memcpy(&k.bytes[1], &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (is_v4_mapped(a6)) {
      k.bytes[0] = 4;
      std::memcpy(&k.bytes[1], reinterpret_cast<const uint8_t*>(&a6) + 12, 4);
    } else {
      k.bytes[0] = 6;
      std::memcpy(&k.bytes[1], &a6, 16);
    }
  }
  return k;
}

SourceKey source_key_uid(uint32_t uid) {
  SourceKey k;
  k.bytes[0] = 'u';
  std::memcpy(&k.bytes[1], &uid, sizeof uid);
  return k;
}

size_t SourceKeyHash::operator()(const SourceKey& k) const noexcept {
  // FNV-1a: the key is at most 17 bytes.
  uint64_t h = 1469598103934665603ULL;
  for (uint8_t b : k.bytes) h = (h ^ b) * 1099511628211ULL;
  return static_cast<size_t>(h);
}

}  // namespace superd::util::net
