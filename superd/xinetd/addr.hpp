// Internal to the importer: xinetd's address forms (only_from / no_access, bind, redirect)
// turned into the CIDRs and "ADDR:PORT" strings superd reads. Name lookups happen here, once,
// at import time.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace superd::xinetd::detail {

struct AddrResult {
  enum class Status { ok, ignored, error };  // error: xinetd rejects the attribute (and disables the service)
  Status status = Status::ok;
  std::vector<std::string> cidrs;  // normalized, e.g. "10.0.0.0/8", "::1/128"
  std::string note;                // why ignored / error, or what was resolved (a warning when non-empty)
};

// One value of only_from / no_access, with xinetd's parsers in xinetd's order: numeric address
// (trailing zero bytes are a wildcard: "128.138.0.0" = 128.138.0.0/16, "0" or "0.0.0.0" =
// everything), host name (resolved now), explicit mask "a.b.c.d/n" or "v6/n", factorized
// "a.b.{c,d}", network name (/etc/networks).
AddrResult parse_access_address(const std::string& value);

// A numeric IPv4/IPv6 address -> canonical text; nullopt if not numeric.
std::optional<std::string> numeric_address(const std::string& s, bool* is_v6 = nullptr);
// Resolves a host name with getaddrinfo (family AF_INET, AF_INET6 or AF_UNSPEC); addresses as text.
std::vector<std::string> resolve_host(const std::string& name, int family);
// The first address of the interface named `name` in `family`, or nullopt (getifaddrs).
std::optional<std::string> interface_address(const std::string& name, int family);

}  // namespace superd::xinetd::detail
