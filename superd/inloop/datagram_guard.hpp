// The stateful half of the guard in front of the internal datagram services (drop_datagram_from in
// inloop.hpp is the stateless half: privileged ports, bogus sources). A UDP source address is
// whatever the sender writes, so a reply is only safe if it cannot feed a loop and cannot be
// aimed at a victim in bulk:
//   OwnSockets:   a datagram that claims to come from one of superd's own listening sockets gets
//                 no reply. Otherwise one forged datagram "from 127.0.0.1:P to 127.0.0.1:P" makes
//                 the service answer itself forever, and one "from echo's port to chargen's"
//                 ping-pongs two services forever.
//   ReplyLimiter: replies per source address (a token bucket each, in a fixed-size table) and
//                 for all sources together (one bucket), so a flood of forged requests turns into
//                 a bounded trickle toward the forged victim.
// Neither makes a syscall on the datagram path; host_addresses() (getifaddrs) runs when a guard
// is built, once per service and configuration generation.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "admission/rate.hpp"
#include "util/net.hpp"

namespace superd::inloop {

class OwnSockets {
 public:
  OwnSockets() = default;
  // `listening`: the listen specs of every service, stream and datagram alike (a forged source
  // port of a TCP listener is refused too: nothing good answers there). `host`: this host's own
  // addresses (host_addresses()); 127.0.0.0/8, ::1 and every non-wildcard listen address count
  // as local anyway.
  OwnSockets(const std::vector<net::ListenSpec>& listening, const std::vector<net::SourceKey>& host);

  // The addresses of this host's interfaces (IPv4 and IPv6, v4-mapped folded); empty if
  // getifaddrs fails, which leaves loopback and the listen addresses.
  static std::vector<net::SourceKey> host_addresses();

  // True if `peer` is a local address on a port where superd listens. Deliberately wider than
  // "exactly one of our sockets": a wildcard listener is reachable on every local address, and a
  // local client that happens to use one of our ports as its own source port loses nothing it
  // should have had. v4-mapped peers are checked as IPv4.
  bool contains(const sockaddr* peer) const noexcept;

 private:
  std::unordered_set<uint16_t> v4_ports_, v6_ports_;
  std::unordered_set<net::SourceKey, net::SourceKeyHash> local_;
};

// Replies to datagrams: at most `per_source` per source address and at most `all` for every
// source together (each a RateLimit: max per interval, bursts of max; max 0 = unlimited).
//
// Strategy for the per-source state: a set-associative table of kEntries buckets, allocated
// once, kWays per set. A source hashes (keyed with a random seed, so a forger cannot aim many
// sources at one set) to a set; a source not in it takes the least recently used way. Memory is
// fixed however many sources a forger invents; evicting a source forgets its bucket, which
// gives it at most one fresh burst; the all-sources bucket still bounds the total.
class ReplyLimiter {
 public:
  using Clock = admission::RateLimit::Clock;
  static constexpr size_t kWays = 8;
  static constexpr size_t kEntries = 4096;

  struct Rate {
    uint32_t max = 0;
    std::chrono::milliseconds interval{1000};
  };
  enum class Verdict { reply, over_source, over_all };

  ReplyLimiter(Rate all, Rate per_source);
  // One reply to `source` at `now`, if both limits allow it. A reply refused for the source
  // takes nothing from the all-sources bucket.
  Verdict take(const net::SourceKey& source, Clock::time_point now);

  // For tests: how many per-source entries are in use (never more than kEntries).
  size_t sources_tracked() const noexcept;

 private:
  struct Entry {
    net::SourceKey key;
    bool used = false;
    uint64_t last = 0;  // use_count_ at its latest take: the LRU order, even within one clock tick
    admission::RateLimit bucket{0, std::chrono::milliseconds(1000)};
  };
  size_t set_of(const net::SourceKey& k) const noexcept;

  Rate per_source_;
  admission::RateLimit all_;
  uint64_t seed_;
  uint64_t use_count_ = 0;
  std::vector<Entry> table_;  // kEntries, or empty when per_source is unlimited
};

}  // namespace superd::inloop
