// fuzz_datagram: the internal datagram services. The input's first byte picks the Internal kind
// (all five), the next 4 bytes the clock, the next 2 the reply capacity (at least
// kMinDatagramCap); the rest is the datagram. The same bytes, as a sockaddr (v4, v6, UNIX or
// anything, padded to sockaddr_storage), go through drop_datagram_from. The reply must fit the
// capacity, and echo must return a prefix of its input.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "inloop/inloop.hpp"

namespace inloop = superd::inloop;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 7) return 0;
  const auto which = static_cast<inloop::Internal>(data[0] % 5);
  uint32_t clock = 0;
  std::memcpy(&clock, data + 1, sizeof clock);
  const size_t cap = inloop::kMinDatagramCap + (static_cast<size_t>(data[5]) | static_cast<size_t>(data[6]) << 8);
  const char* in = reinterpret_cast<const char*>(data) + 7;
  const size_t in_len = size - 7;
  std::vector<char> out(cap);
  auto n = inloop::answer_datagram(which, in, in_len, out.data(), cap, static_cast<time_t>(clock));
  if (n && *n > cap) std::abort();
  if (n && which == inloop::Internal::echo && (*n > in_len || std::memcmp(out.data(), in, *n) != 0)) std::abort();

  sockaddr_storage peer{};
  std::memcpy(&peer, data, std::min(size, sizeof peer));
  (void)inloop::drop_datagram_from(reinterpret_cast<const sockaddr*>(&peer));
  return 0;
}
