// xinetd's address forms (addr.c in xinetd 2.3.15), rewritten as CIDRs at import time.
// Host names and network names are resolved here, once: xinetd matched host names by a reverse
// lookup per connection, which superd does not do, so each resolution is reported.
#include "xinetd/addr.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace superd::xinetd::detail {
namespace {

bool digits_and_dots(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; });
}

std::string v4_text(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::string v4_cidr(uint32_t addr, unsigned prefix) {
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return v4_text(addr & mask) + "/" + std::to_string(prefix);
}

std::string v6_cidr(in6_addr a, unsigned prefix) {
  for (unsigned i = 0; i < 16; ++i) {
    unsigned keep = prefix >= (i + 1) * 8 ? 8 : (prefix > i * 8 ? prefix - i * 8 : 0);
    a.s6_addr[i] &= static_cast<uint8_t>(keep == 0 ? 0 : 0xFF << (8 - keep));
  }
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, &a, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

unsigned prefix_of_mask(uint32_t mask) {
  unsigned n = 0;
  while (n < 32 && (mask & (0x80000000u >> n))) ++n;
  return n;
}

// "a.b.{c,d}" -> one CIDR per alternative, or an error text.
bool factorized(const std::string& s, std::vector<std::string>& out, std::string& why) {
  size_t brace = s.find('{');
  uint32_t addr = 0, num = 0;
  int shift = 24;
  char last = '.';
  for (size_t i = 0; i < brace; last = s[i++]) {
    if (std::isdigit(static_cast<unsigned char>(s[i]))) {
      num = num * 10 + static_cast<uint32_t>(s[i] - '0');
      continue;
    }
    if (s[i] != '.' || last == '.') {
      why = "bad factorized address \"" + s + "\"";
      return false;
    }
    addr = addr * 256 + num;
    num = 0;
    shift -= 8;
  }
  if (shift < 0) {
    why = "bad factorized address \"" + s + "\"";
    return false;
  }
  if (addr != 0) addr <<= (shift + 8);
  size_t close = s.find('}', brace);
  if (close == std::string::npos) {
    why = "bad factorized address \"" + s + "\": no '}'";
    return false;
  }
  std::string list = s.substr(brace + 1, close - brace - 1);
  size_t start = 0;
  for (;;) {
    size_t comma = list.find(',', start);
    std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty() ||
        !std::all_of(item.begin(), item.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
        item.size() > 3 || std::stoul(item) > 255) {
      why = "bad factorized address \"" + s + "\"";
      return false;
    }
    out.push_back(
        v4_cidr(addr + (static_cast<uint32_t>(std::stoul(item)) << shift), static_cast<unsigned>(32 - shift)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return true;
}

}  // namespace

std::optional<std::string> numeric_address(const std::string& s, bool* is_v6) {
  in_addr a4{};
  in6_addr a6{};
  char buf[INET6_ADDRSTRLEN];
  if (::inet_pton(AF_INET, s.c_str(), &a4) == 1) {
    if (is_v6) *is_v6 = false;
    ::inet_ntop(AF_INET, &a4, buf, sizeof buf);
    return std::string(buf);
  }
  if (::inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
    if (is_v6) *is_v6 = true;
    ::inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    return std::string(buf);
  }
  return std::nullopt;
}

std::vector<std::string> resolve_host(const std::string& name, int family) {
  std::vector<std::string> out;
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0) return out;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN];
    if (ai->ai_family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof buf);
    else if (ai->ai_family == AF_INET6)
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf, sizeof buf);
    else
      continue;
    if (std::find(out.begin(), out.end(), buf) == out.end()) out.emplace_back(buf);
  }
  ::freeaddrinfo(res);
  return out;
}

std::optional<std::string> interface_address(const std::string& name, int family) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (ifaddrs* i = list; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || name != i->ifa_name || i->ifa_addr->sa_family != family) continue;
    char buf[INET6_ADDRSTRLEN];
    if (family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    else
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf, sizeof buf);
    found = buf;
  }
  ::freeifaddrs(list);
  return found;
}

AddrResult parse_access_address(const std::string& s) {
  AddrResult r;
  using S = AddrResult::Status;
  if (s.find(',') != std::string::npos && s.find('{') == std::string::npos) {
    r.status = S::error;
    r.note = "\"" + s + "\" has a comma in it (list addresses separated by blanks)";
    return r;
  }
  bool has_slash = s.find('/') != std::string::npos, has_brace = s.find('{') != std::string::npos;
  // 1. Numeric: an IPv4 address's trailing zero bytes are a wildcard (xinetd's numeric_addr).
  if (!has_slash && !has_brace) {
    in6_addr a6{};
    in_addr a4{};
    if (s.find(':') != std::string::npos) {
      if (::inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
        r.cidrs.push_back(IN6_IS_ADDR_UNSPECIFIED(&a6) ? "::/0" : v6_cidr(a6, 128));
        return r;
      }
    } else if (digits_and_dots(s) && ::inet_aton(s.c_str(), &a4) == 1) {
      uint32_t addr = ntohl(a4.s_addr);
      if (addr == 0) {
        r.cidrs.push_back("0.0.0.0/0");
        return r;
      }
      uint32_t mask = 0xFF;
      while (!(addr & mask)) mask = (mask << 8) | 0xFF;
      mask = ~(mask >> 8);
      unsigned prefix = prefix_of_mask(mask);
      r.cidrs.push_back(v4_cidr(addr, prefix));
      if (prefix < 32) r.note = "\"" + s + "\" ends in zero bytes, which xinetd reads as a wildcard: " + r.cidrs.back();
      return r;
    }
  }
  // 2. Host names; ".domain" matched the reverse lookup of each peer in xinetd.
  if (!has_slash && !has_brace) {
    if (s[0] == '.') {
      r.status = S::ignored;
      r.note = "domain \"" + s + "\" is not supported (superd does no reverse lookup per connection); left out";
      return r;
    }
    if (!digits_and_dots(s)) {
      auto addrs = resolve_host(s, AF_UNSPEC);
      if (!addrs.empty()) {
        std::string list;
        for (const auto& a : addrs) {
          bool v6 = a.find(':') != std::string::npos;
          r.cidrs.push_back(a + (v6 ? "/128" : "/32"));
          list += (list.empty() ? "" : ", ") + a;
        }
        r.note = "host name \"" + s + "\" resolved now to " + list +
                 " (xinetd matched the name by a reverse lookup of each peer)";
        return r;
      }
    }
  }
  // 3. Explicit mask.
  if (has_slash && !has_brace) {
    std::string addr = s.substr(0, s.find('/')), bits = s.substr(s.find('/') + 1);
    bool ok = !bits.empty() && bits.size() <= 3 &&
              std::all_of(bits.begin(), bits.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    in_addr a4{};
    in6_addr a6{};
    if (ok && ::inet_pton(AF_INET, addr.c_str(), &a4) == 1) {
      r.cidrs.push_back(v4_cidr(ntohl(a4.s_addr), std::min<unsigned>(32, static_cast<unsigned>(std::stoul(bits)))));
      return r;
    }
    if (ok && ::inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
      r.cidrs.push_back(v6_cidr(a6, std::min<unsigned>(128, static_cast<unsigned>(std::stoul(bits)))));
      return r;
    }
  }
  // 4. Factorized "a.b.{c,d}": the braces must end the address.
  if (has_brace) {
    std::string why;
    size_t close = s.find('}');
    if (close != std::string::npos && close + 1 != s.size()) {
      // xinetd rejects "128.138.{193,194}.0"; expand what it meant so the file can be enabled.
      std::string head = s.substr(0, close + 1), tail = s.substr(close + 1);
      if (factorized(head, r.cidrs, why)) {
        r.status = S::error;
        r.note = "\"" + s + "\": xinetd wants the braces at the end of a factorized address (\"" + head +
                 "\") and rejects this one; expanded as \"" + head + "\"";
        return r;
      }
    } else if (factorized(s, r.cidrs, why)) {
      return r;
    }
    r.status = S::error;
    r.note = why;
    return r;
  }
  // 5. Network names from /etc/networks.
  if (!has_slash) {
    if (netent* n = ::getnetbyname(s.c_str()); n && n->n_addrtype == AF_INET && n->n_net != 0) {
      uint32_t net = static_cast<uint32_t>(n->n_net);
      unsigned shift = net <= 0xFF ? 24 : net <= 0xFFFF ? 16 : net <= 0xFFFFFF ? 8 : 0;
      r.cidrs.push_back(v4_cidr(net << shift, 32 - shift));
      r.note = "network name \"" + s + "\" resolved now to " + r.cidrs.back();
      return r;
    }
  }
  r.status = S::ignored;
  r.note = "cannot parse or resolve \"" + s + "\"; xinetd ignores it too";
  return r;
}

}  // namespace superd::xinetd::detail
