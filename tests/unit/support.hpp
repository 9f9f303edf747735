// What several unit tests share: socket addresses from strings, and a scratch directory under
// /srv (never /tmp) that is removed when the test ends, whether it passed or not.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include "util/net.hpp"

namespace superd::test {

inline sockaddr_storage v4(const char* ip, uint16_t port = 0) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  REQUIRE(::inet_pton(AF_INET, ip, &in->sin_addr) == 1);
  return ss;
}

inline sockaddr_storage v6(const char* ip, uint16_t port = 0) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in6*>(&ss);
  in->sin6_family = AF_INET6;
  in->sin6_port = htons(port);
  REQUIRE(::inet_pton(AF_INET6, ip, &in->sin6_addr) == 1);
  return ss;
}

inline const sockaddr* sa(const sockaddr_storage& s) {
  return reinterpret_cast<const sockaddr*>(&s);
}

// A CIDR from a literal the test knows to be valid.
inline net::Cidr cidr(const char* s) {
  std::string why;
  auto c = net::parse_cidr(s, why);
  REQUIRE(c);
  return *c;
}

// /srv/<prefix>-XXXXXX, created at construction, removed with everything in it at destruction.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& prefix = "ut") {
    std::filesystem::create_directories("/srv");
    std::string tmpl = "/srv/" + prefix + "-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace superd::test
