// Socket addresses as superd writes them: listen specs ("PORT", "ADDR:PORT", "[V6]:PORT",
// "/path", "@abstract"), CIDR ranges for allow/deny, and printing a peer for logs and env.
// Pure functions over strings and sockaddrs; no I/O, so they are unit-tested from strings.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace superd::util::net {

enum class Kind { inet4, inet6, dual, unix_path, unix_abstract };

struct ListenSpec {
  Kind kind = Kind::inet4;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  uint16_t port = 0;  // TCP kinds only
  std::string path;   // unix kinds: the path, or the abstract name without '@'

  bool is_unix() const { return kind == Kind::unix_path || kind == Kind::unix_abstract; }
  bool is_wildcard() const;  // 0.0.0.0, ::, or a bare port
  // Two specs that cannot both be bound (same address, or a wildcard on the same port).
  bool conflicts_with(const ListenSpec& o) const;
  std::string to_string() const;
};

// Parses a listen spec; on failure returns nullopt and sets `why`.
std::optional<ListenSpec> parse_listen(std::string_view s, std::string& why);

struct Cidr {
  int family = AF_INET;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};
  unsigned prefix = 0;

  // IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match IPv4 ranges.
  bool contains(const sockaddr* sa) const;
};

// "10.0.0.0/8", "::1/128", or a bare address (a /32 or /128).
std::optional<Cidr> parse_cidr(std::string_view s, std::string& why);

// The peer as text: "1.2.3.4", "::1" (v4-mapped shown as v4); port separately.
std::string address_string(const sockaddr* sa);
uint16_t address_port(const sockaddr* sa);

// A compact key for per-source counting: the IP (v4-mapped folded to v4).
struct SourceKey {
  std::array<uint8_t, 17> bytes{};  // [0] = family tag
  bool operator==(const SourceKey&) const = default;
};
SourceKey source_key(const sockaddr* sa);
SourceKey source_key_uid(uint32_t uid);
struct SourceKeyHash {
  size_t operator()(const SourceKey& k) const noexcept;
};

}  // namespace superd::util::net

// Called by its short name across superd (net::...); it lives in util/.
namespace superd {
namespace net = util::net;
}  // namespace superd
