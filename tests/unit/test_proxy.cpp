// The PROXY header parser (proxy/header.hpp) on the examples of HAProxy's proxy-protocol.txt,
// its worst cases, byte-by-byte arrival, and the bounds it must refuse.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/header.hpp"

using namespace superd;
using Kind = proxy::Result::Kind;

namespace {

std::vector<uint8_t> bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

proxy::Result parse(const std::vector<uint8_t>& b, proxy::Limits l = {}) {
  return proxy::parse(b, l);
}

std::string addr(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    port = ntohs(in6->sin6_port);
  } else {
    return "none";
  }
  return std::string(buf) + " " + std::to_string(port);
}

const std::vector<uint8_t> kSig = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

void put16(std::vector<uint8_t>& b, size_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

void tlv(std::vector<uint8_t>& b, uint8_t type, std::string_view value) {
  b.push_back(type);
  put16(b, value.size());
  b.insert(b.end(), value.begin(), value.end());
}

// A v2 header: `cmd` 0x20 LOCAL / 0x21 PROXY, `fam`, then addresses and TLVs as given.
std::vector<uint8_t> v2(uint8_t cmd, uint8_t fam, const std::vector<uint8_t>& body) {
  std::vector<uint8_t> b = kSig;
  b.push_back(cmd);
  b.push_back(fam);
  put16(b, body.size());
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

// 192.0.2.1:56324 -> 198.51.100.7:443, as a v2 TCP over IPv4 address block.
std::vector<uint8_t> inet4_block() {
  return {192, 0, 2, 1, 198, 51, 100, 7, 0xDC, 0x04, 0x01, 0xBB};
}

}  // namespace

TEST_CASE("proxy v1: the spec's example, with the client's bytes behind it") {
  auto b = bytes("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
  auto r = parse(b);
  REQUIRE(r.kind == Kind::done);
  CHECK(r.length == 47);  // the header only: the GET stays for the service
  CHECK(r.header.version == 1);
  CHECK(r.header.has_addresses);
  CHECK_FALSE(r.header.local);
  CHECK(addr(r.header.source) == "192.168.0.1 56324");
  CHECK(addr(r.header.destination) == "192.168.0.11 443");
}

TEST_CASE("proxy v1: the worst cases of the spec fit, one byte more does not") {
  std::string tcp6 =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(tcp6.size() == 104);
  auto r = parse(bytes(tcp6));
  REQUIRE(r.kind == Kind::done);
  CHECK(addr(r.header.source) == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535");
  std::string unknown =
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(unknown.size() == 107);
  r = parse(bytes(unknown));
  REQUIRE(r.kind == Kind::done);
  CHECK_FALSE(r.header.has_addresses);  // UNKNOWN: the connection's own endpoints stand
  CHECK(parse(bytes("PROXY UNKNOWN\r\n")).kind == Kind::done);
  std::string too_long = "PROXY UNKNOWN " + std::string(93, 'x') + "\r\n";
  CHECK(too_long.size() == 109);
  r = parse(bytes(too_long));
  CHECK(r.kind == Kind::error);
  CHECK_THAT(r.error, Catch::Contains("107"));
}

TEST_CASE("proxy v1: arriving byte by byte, every prefix asks for more") {
  std::string h = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
  auto b = bytes(h + "payload");
  for (size_t n = 0; n < h.size(); ++n) {
    auto r = proxy::parse(std::span<const uint8_t>(b.data(), n), {});
    INFO("prefix of " << n << " bytes");
    REQUIRE(r.kind == Kind::more);
    CHECK(r.need > n);
  }
  auto r = parse(b);
  REQUIRE(r.kind == Kind::done);
  CHECK(r.length == h.size());
  CHECK(addr(r.header.destination) == "2001:db8::2 65535");
}

TEST_CASE("proxy v1: malformed lines are refused") {
  for (const char* bad :
       {"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "GET / HTTP/1.0\r\n", "PROXX TCP4"}) {
    INFO(bad);
    CHECK(parse(bytes(bad)).kind == Kind::error);
  }
}

TEST_CASE("proxy v2: PROXY over IPv4 with the TLVs superd passes on, and a checksum") {
  std::vector<uint8_t> body = inet4_block();
  tlv(body, 0x02, "example.com");                 // AUTHORITY (SNI)
  tlv(body, 0x05, "req-42");                      // UNIQUE_ID
  tlv(body, 0x01, "h2");                          // ALPN: ignored
  tlv(body, 0xEE, std::string("\0\1", 2));        // unknown: ignored
  std::vector<uint8_t> ssl = {0x01, 0, 0, 0, 0};  // PP2_CLIENT_SSL, verify 0
  tlv(ssl, 0x21, "TLSv1.3");
  tlv(ssl, 0x22, "client.example");
  tlv(body, 0x20, std::string_view(reinterpret_cast<const char*>(ssl.data()), ssl.size()));
  tlv(body, 0x30, "blue");  // NETNS
  tlv(body, 0x03, std::string(4, '\0'));
  auto b = v2(0x21, 0x11, body);
  uint32_t crc = proxy::crc32c(b);
  for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  auto with_payload = b;
  with_payload.push_back('x');
  auto r = parse(with_payload);
  REQUIRE(r.kind == Kind::done);
  CHECK(r.length == b.size());
  CHECK(r.header.version == 2);
  CHECK(addr(r.header.source) == "192.0.2.1 56324");
  CHECK(addr(r.header.destination) == "198.51.100.7 443");
  CHECK(r.header.authority == "example.com");
  CHECK(r.header.unique_id == "req-42");
  CHECK(r.header.ssl);
  CHECK(r.header.ssl_version == "TLSv1.3");
  CHECK(r.header.ssl_cn == "client.example");
  CHECK(r.header.netns == "blue");

  b[b.size() - 1] ^= 1;  // the checksum no longer matches
  r = parse(b);
  CHECK(r.kind == Kind::error);
  CHECK_THAT(r.error, Catch::Contains("CRC32C"));
}

TEST_CASE("proxy v2: LOCAL, AF_UNSPEC, IPv6, byte by byte") {
  auto local = parse(v2(0x20, 0x00, {}));
  REQUIRE(local.kind == Kind::done);
  CHECK(local.header.local);
  CHECK(local.length == 16);
  auto unspec = parse(v2(0x21, 0x00, {}));
  REQUIRE(unspec.kind == Kind::done);
  CHECK_FALSE(unspec.header.has_addresses);
  std::vector<uint8_t> a6(36, 0);
  a6[15] = 1;                                                              // ::1
  a6[16] = 0x20, a6[17] = 0x01, a6[18] = 0x0d, a6[19] = 0xb8, a6[31] = 2;  // 2001:db8::2
  a6[32] = 0x30, a6[33] = 0x39, a6[34] = 0x00, a6[35] = 0x50;              // 12345 -> 80
  auto b = v2(0x21, 0x21, a6);
  for (size_t n = 0; n < b.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    REQUIRE(proxy::parse(std::span<const uint8_t>(b.data(), n), {}).kind == Kind::more);
  }
  auto r = parse(b);
  REQUIRE(r.kind == Kind::done);
  CHECK(addr(r.header.source) == "::1 12345");
  CHECK(addr(r.header.destination) == "2001:db8::2 80");
}

TEST_CASE("proxy v2: bounds are checked on the fixed part, before the body is read") {
  std::vector<uint8_t> head = kSig;
  head.insert(head.end(), {0x21, 0x11, 0x10, 0x0C});  // 4108 bytes: 12 of addresses, 4096 of TLVs
  auto r = parse(head);
  CHECK(r.kind == Kind::more);  // exactly proxy_max_tlv: allowed, waits for the body
  CHECK(r.need == 16 + 4108);
  head[15] = 0x0D;  // one byte more
  r = parse(head);
  REQUIRE(r.kind == Kind::error);
  CHECK_THAT(r.error, Catch::Contains("proxy_max_tlv=4096"));
  CHECK(parse(head, {proxy::Versions::any, 8192}).kind == Kind::more);
  CHECK(proxy::max_header({proxy::Versions::v1, 4096}) == 107);
  CHECK(proxy::max_header({proxy::Versions::v2, 4096}) == 16 + 216 + 4096);

  CHECK(parse(v2(0x22, 0x11, inet4_block())).kind == Kind::error);  // command 2
  CHECK(parse(v2(0x11, 0x11, inet4_block())).kind == Kind::error);  // version 1
  CHECK(parse(v2(0x21, 0x41, inet4_block())).kind == Kind::error);  // family 4
  CHECK(parse(v2(0x21, 0x12, inet4_block())).kind == Kind::error);  // a datagram
  CHECK(parse(v2(0x21, 0x21, inet4_block())).kind == Kind::error);  // IPv6 in 12 bytes
  auto cut = inet4_block();
  cut.insert(cut.end(), {0x02, 0x00, 0x09, 'a'});  // a TLV that claims 9 bytes, has 1
  CHECK(parse(v2(0x21, 0x11, cut)).kind == Kind::error);
  auto ctl = inet4_block();
  tlv(ctl, 0x02, "evil\nHOME=/");  // not printable: dropped, not passed to the environment
  r = parse(v2(0x21, 0x11, ctl));
  REQUIRE(r.kind == Kind::done);
  CHECK(r.header.authority.empty());
}

TEST_CASE("proxy: one version only, when configured so") {
  auto one = bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
  auto two = v2(0x21, 0x11, inet4_block());
  CHECK(parse(one, {proxy::Versions::v1}).kind == Kind::done);
  CHECK(parse(two, {proxy::Versions::v1}).kind == Kind::error);
  CHECK(parse(two, {proxy::Versions::v2}).kind == Kind::done);
  CHECK(parse(one, {proxy::Versions::v2}).kind == Kind::error);
}

TEST_CASE("crc32c: the standard check value") {
  auto b = bytes("123456789");
  CHECK(proxy::crc32c(b) == 0xE3069283u);
}
