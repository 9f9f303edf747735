// proxy::parse: the PROXY protocol header (HAProxy's proxy-protocol.txt, v1 text and v2 binary)
// that a load balancer sends ahead of its client's bytes, naming the real client.
//
// Pure and bounded: the caller peeks at most max_header() bytes from the socket (MSG_PEEK) and
// asks; the answer is "more" (with how many bytes it needs at least), "done" (with the header's
// exact length, so that the caller consumes those bytes and nothing of the service's), or an
// error naming what is wrong. Nothing here reads a socket, allocates per byte, or trusts a length
// before checking it against its limit: v1 lines are at most 107 bytes, v2 headers at most
// 16 + the address block + `max_tlv`.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace superd::proxy {

enum class Versions : uint8_t { v1 = 1, v2 = 2, any = 3 };

struct Limits {
  Versions accept = Versions::any;
  size_t max_tlv = 4096;  // v2: bytes of TLVs after the addresses (proxy_max_tlv)
};

constexpr size_t kV1Max = 107;         // the spec's worst case, "\r\n" included
constexpr size_t kV2Fixed = 16;        // signature, version/command, family, length
constexpr size_t kV2MaxAddress = 216;  // AF_UNIX: two 108-byte paths
constexpr size_t kMaxTlvCap = 65535 - kV2MaxAddress;

// The bytes the caller must be able to peek to see a whole header under `l`.
size_t max_header(const Limits& l) noexcept;

struct Header {
  int version = 0;     // 1 or 2
  bool local = false;  // v2 LOCAL: the proxy's own connection (a health check), no client
  // False for LOCAL, v1 UNKNOWN, v2 AF_UNSPEC and AF_UNIX: the spec says to use the
  // connection's own endpoints then.
  bool has_addresses = false;
  sockaddr_storage source{}, destination{};  // the real client, and the address it connected to
  // v2 TLVs, kept only when printable ASCII (they become environment variables).
  std::string authority, unique_id, ssl_version, ssl_cn, netns;
  bool ssl = false;  // a PP2_TYPE_SSL TLV said the client connected over TLS
};

struct Result {
  enum class Kind { more, done, error };
  Kind kind = Kind::more;
  size_t need = 0;    // more: at least this many bytes in all
  size_t length = 0;  // done: the header's length in bytes
  Header header;      // done
  std::string error;  // error: for the REFUSE line
};

Result parse(std::span<const uint8_t> data, const Limits& l);

// CRC-32C (Castagnoli), as PP2_TYPE_CRC32C carries it.
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0) noexcept;

}  // namespace superd::proxy
