// The PROXY header parser: v1 (one text line) and v2 (a binary block with TLVs). See header.hpp.
#include "proxy/header.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

namespace superd::proxy {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::array<uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// v2 TLV types (section 2.2).
enum : uint8_t {
  kTlvAlpn = 0x01,
  kTlvAuthority = 0x02,
  kTlvCrc32c = 0x03,
  kTlvNoop = 0x04,
  kTlvUniqueId = 0x05,
  kTlvSsl = 0x20,
  kSubTlvSslVersion = 0x21,
  kSubTlvSslCn = 0x22,
  kTlvNetns = 0x30,
};
constexpr size_t kMaxUniqueId = 128;

Result fail(std::string why) {
  Result r;
  r.kind = Result::Kind::error;
  r.error = std::move(why);
  return r;
}

Result more(size_t need) {
  Result r;
  r.need = need;
  return r;
}

bool prefix_of(std::span<const uint8_t> data, const uint8_t* sig, size_t n) {
  return std::memcmp(data.data(), sig, std::min(data.size(), n)) == 0;
}

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// ---------------------------------------------------------------- v1

// A decimal port: 1-5 digits, at most 65535.
bool parse_port(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

bool parse_address(int family, std::string_view text, uint16_t port, sockaddr_storage& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::memset(&out, 0, sizeof out);
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    return ::inet_pton(AF_INET, buf, &in->sin_addr) == 1;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  return ::inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1;
}

// "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", "PROXY UNKNOWN ...\r\n".
Result parse_v1(std::span<const uint8_t> data) {
  size_t scan = std::min(data.size(), kV1Max);
  const char* text = reinterpret_cast<const char*>(data.data());
  const char* cr = static_cast<const char*>(std::memchr(text, '\r', scan));
  const char* lf = static_cast<const char*>(std::memchr(text, '\n', scan));
  if (lf != nullptr && (cr == nullptr || lf < cr)) return fail("PROXY v1 line not ended by CRLF");
  if (cr == nullptr || static_cast<size_t>(cr - text) + 1 >= scan) {
    if (data.size() >= kV1Max) return fail("PROXY v1 line longer than 107 bytes");
    return more(data.size() + 1);
  }
  if (cr[1] != '\n') return fail("PROXY v1 line not ended by CRLF");
  size_t length = static_cast<size_t>(cr - text) + 2;
  std::string_view line(text + kV1Prefix.size(), static_cast<size_t>(cr - text) - kV1Prefix.size());
  if (line.find('\n') != std::string_view::npos) return fail("PROXY v1 line holds a line feed");

  Result r;
  r.kind = Result::Kind::done;
  r.length = length;
  r.header.version = 1;
  // UNKNOWN: the rest of the line is to be ignored; the connection's own endpoints stand.
  if (line == "UNKNOWN" || line.starts_with("UNKNOWN ")) return r;

  std::array<std::string_view, 5> f;
  size_t n = 0;
  while (n < f.size()) {
    size_t sp = line.find(' ');
    f[n++] = line.substr(0, sp);
    if (sp == std::string_view::npos) {
      line = {};
      break;
    }
    line.remove_prefix(sp + 1);
  }
  if (n != f.size() || !line.empty()) return fail("PROXY v1 line does not have 5 fields after PROXY");
  int family = 0;
  if (f[0] == "TCP4")
    family = AF_INET;
  else if (f[0] == "TCP6")
    family = AF_INET6;
  else
    return fail("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
  uint16_t sport = 0, dport = 0;
  if (!parse_port(f[3], sport) || !parse_port(f[4], dport)) return fail("PROXY v1 port is not a number 0..65535");
  if (!parse_address(family, f[1], sport, r.header.source) || !parse_address(family, f[2], dport, r.header.destination))
    return fail(family == AF_INET ? "PROXY v1 TCP4 address is not IPv4" : "PROXY v1 TCP6 address is not IPv6");
  r.header.has_addresses = true;
  return r;
}

// ---------------------------------------------------------------- v2

bool printable(std::span<const uint8_t> v) {
  return std::all_of(v.begin(), v.end(), [](uint8_t c) { return c >= 0x20 && c < 0x7f; });
}

void keep(std::string& out, std::span<const uint8_t> v) {
  if (printable(v)) out.assign(reinterpret_cast<const char*>(v.data()), v.size());
}

// The TLVs of [begin, end); `whole` is the header, for the CRC.
std::string parse_tlvs(std::span<const uint8_t> whole, size_t begin, Header& h, bool nested) {
  size_t at = begin;
  while (at < whole.size()) {
    if (whole.size() - at < 3) return "PROXY v2 TLV cut short";
    uint8_t type = whole[at];
    size_t len = be16(&whole[at + 1]);
    size_t value = at + 3;
    if (whole.size() - value < len) return "PROXY v2 TLV runs past the header";
    std::span<const uint8_t> v = whole.subspan(value, len);
    if (nested) {
      if (type == kSubTlvSslVersion) keep(h.ssl_version, v);
      if (type == kSubTlvSslCn) keep(h.ssl_cn, v);
    } else {
      switch (type) {
        case kTlvAuthority:
          keep(h.authority, v);
          break;
        case kTlvUniqueId:
          if (len > kMaxUniqueId) return "PROXY v2 UNIQUE_ID longer than 128 bytes";
          keep(h.unique_id, v);
          break;
        case kTlvNetns:
          keep(h.netns, v);
          break;
        case kTlvCrc32c: {
          if (len != 4) return "PROXY v2 CRC32C TLV is not 4 bytes";
          uint32_t want = static_cast<uint32_t>(v[0]) << 24 | static_cast<uint32_t>(v[1]) << 16 |
                          static_cast<uint32_t>(v[2]) << 8 | v[3];
          // The checksum covers the whole header with the checksum field itself as zeros.
          static constexpr uint8_t kZero[4] = {};
          uint32_t crc = crc32c(whole.first(value));
          crc = crc32c(kZero, crc);
          crc = crc32c(whole.subspan(value + 4), crc);
          if (crc != want) return "PROXY v2 CRC32C does not match";
          break;
        }
        case kTlvSsl: {
          if (len < 5) return "PROXY v2 SSL TLV shorter than 5 bytes";
          h.ssl = (v[0] & 0x01) != 0;  // PP2_CLIENT_SSL
          // Its sub-TLVs follow the client byte and the 32-bit verify field.
          std::span<const uint8_t> inner = whole.first(value + len);
          if (auto why = parse_tlvs(inner, value + 5, h, true); !why.empty()) return why;
          break;
        }
        case kTlvAlpn:
        case kTlvNoop:
        default:
          break;  // known but unused, or unknown: the spec says to ignore them
      }
    }
    at = value + len;
  }
  return {};
}

Result parse_v2(std::span<const uint8_t> data, const Limits& l) {
  if (data.size() < kV2Fixed) return more(kV2Fixed);
  uint8_t ver_cmd = data[12], fam = data[13];
  size_t len = be16(&data[14]);
  if ((ver_cmd >> 4) != 2) return fail("PROXY v2 version is not 2");
  uint8_t cmd = ver_cmd & 0x0F;
  if (cmd > 1) return fail("PROXY v2 command is neither LOCAL nor PROXY");
  uint8_t family = fam >> 4, transport = fam & 0x0F;
  size_t address = 0;
  switch (family) {
    case 0:
      address = 0;
      break;
    case 1:
      address = 12;
      break;
    case 2:
      address = 36;
      break;
    case 3:
      address = 216;
      break;
    default:
      return fail("PROXY v2 address family unknown");
  }
  if (transport > 2) return fail("PROXY v2 transport unknown");
  if (cmd == 1 && len < address) return fail("PROXY v2 length shorter than its addresses");
  size_t tlv = len > address ? len - address : 0;
  if (tlv > l.max_tlv)
    return fail("PROXY v2 header has " + std::to_string(tlv) +
                " bytes of TLVs, over proxy_max_tlv=" + std::to_string(l.max_tlv));
  if (data.size() < kV2Fixed + len) return more(kV2Fixed + len);

  Result r;
  r.kind = Result::Kind::done;
  r.length = kV2Fixed + len;
  Header& h = r.header;
  h.version = 2;
  std::span<const uint8_t> whole = data.first(r.length);
  if (cmd == 0) {
    // LOCAL: the proxy speaks for itself (a health check); its addresses and TLVs are ignored.
    h.local = true;
    return r;
  }
  if (transport == 2) return fail("PROXY v2 announces a datagram on a stream connection");
  const uint8_t* a = &data[kV2Fixed];
  if (family == 1 && transport == 1) {
    auto* s = reinterpret_cast<sockaddr_in*>(&h.source);
    auto* d = reinterpret_cast<sockaddr_in*>(&h.destination);
    s->sin_family = d->sin_family = AF_INET;
    std::memcpy(&s->sin_addr, a, 4);
    std::memcpy(&d->sin_addr, a + 4, 4);
    std::memcpy(&s->sin_port, a + 8, 2);
    std::memcpy(&d->sin_port, a + 10, 2);
    h.has_addresses = true;
  } else if (family == 2 && transport == 1) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&h.source);
    auto* d = reinterpret_cast<sockaddr_in6*>(&h.destination);
    s->sin6_family = d->sin6_family = AF_INET6;
    std::memcpy(&s->sin6_addr, a, 16);
    std::memcpy(&d->sin6_addr, a + 16, 16);
    std::memcpy(&s->sin6_port, a + 32, 2);
    std::memcpy(&d->sin6_port, a + 34, 2);
    h.has_addresses = true;
  }
  // AF_UNSPEC, or AF_UNIX (no IP client to admit): the connection's own endpoints stand.
  if (auto why = parse_tlvs(whole, kV2Fixed + address, h, false); !why.empty()) return fail(why);
  return r;
}

}  // namespace

size_t max_header(const Limits& l) noexcept {
  size_t v2 = kV2Fixed + kV2MaxAddress + std::min(l.max_tlv, kMaxTlvCap);
  if (l.accept == Versions::v1) return kV1Max;
  return std::max(kV1Max, v2);
}

Result parse(std::span<const uint8_t> data, const Limits& l) {
  bool v1 = l.accept != Versions::v2, v2 = l.accept != Versions::v1;
  if (data.empty()) return more(1);
  auto* v1sig = reinterpret_cast<const uint8_t*>(kV1Prefix.data());
  if (v1 && prefix_of(data, v1sig, kV1Prefix.size())) {
    if (data.size() < kV1Prefix.size()) return more(kV1Prefix.size());
    return parse_v1(data);
  }
  if (v2 && prefix_of(data, kV2Signature.data(), kV2Signature.size())) {
    if (data.size() < kV2Signature.size()) return more(kV2Signature.size());
    return parse_v2(data, l);
  }
  switch (l.accept) {
    case Versions::v1:
      return fail("no PROXY v1 header");
    case Versions::v2:
      return fail("no PROXY v2 header");
    case Versions::any:
      break;
  }
  return fail("no PROXY header");
}

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc) noexcept {
  // Bitwise, reflected polynomial 0x82F63B78: a header is at most a few KiB, once per connection.
  crc = ~crc;
  for (uint8_t b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

}  // namespace superd::proxy
