// OwnSockets and ReplyLimiter: see the header for the strategy. Everything on the datagram path
// is a hash lookup or a bounded scan of one table set; no allocation after construction.
#include "inloop/datagram_guard.hpp"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <cstring>
#include <random>

namespace superd::inloop {
namespace {

constexpr uint8_t kTagV4 = 4, kTagV6 = 6;  // net::source_key's family tags

uint16_t port_of(const sockaddr* sa) noexcept {
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
}

bool is_v4_mapped(const sockaddr* sa) noexcept {
  return sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
}

// splitmix64's finaliser: every input bit reaches every output bit.
uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

OwnSockets::OwnSockets(const std::vector<net::ListenSpec>& listening, const std::vector<net::SourceKey>& host)
    : local_(host.begin(), host.end()) {
  for (const net::ListenSpec& l : listening) {
    if (l.is_unix()) continue;
    const auto* sa = reinterpret_cast<const sockaddr*>(&l.addr);
    bool v4 = false, v6 = false;
    switch (l.kind) {
      case net::Kind::inet4:
        v4 = true;
        break;
      case net::Kind::dual:
        v4 = v6 = true;
        break;
      case net::Kind::inet6:
        // "[::]:P" takes IPv4 too unless it is v6-only; counting it for both costs nothing.
        if (l.is_wildcard())
          v4 = v6 = true;
        else if (is_v4_mapped(sa))
          v4 = true;
        else
          v6 = true;
        break;
      default:
        break;
    }
    if (v4) v4_ports_.insert(l.port);
    if (v6) v6_ports_.insert(l.port);
    // A listener bound to a specific address is local even if getifaddrs missed it.
    if (!l.is_wildcard()) local_.insert(net::source_key(sa));
  }
}

std::vector<net::SourceKey> OwnSockets::host_addresses() {
  std::vector<net::SourceKey> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next)
    if (i->ifa_addr && (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6))
      out.push_back(net::source_key(i->ifa_addr));
  ::freeifaddrs(list);
  return out;
}

bool OwnSockets::contains(const sockaddr* peer) const noexcept {
  if (!peer || (peer->sa_family != AF_INET && peer->sa_family != AF_INET6)) return false;
  uint16_t port = port_of(peer);
  net::SourceKey k = net::source_key(peer);  // v4-mapped folded to IPv4
  if (k.bytes[0] == kTagV4) {
    if (!v4_ports_.count(port)) return false;
    return k.bytes[1] == 127 || local_.count(k);
  }
  if (!v6_ports_.count(port)) return false;
  static const uint8_t kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(&k.bytes[1], kLoopback6, 16) == 0 || local_.count(k);
}

ReplyLimiter::ReplyLimiter(Rate all, Rate per_source) : per_source_(per_source), all_(all.max, all.interval) {
  std::random_device rd;
  seed_ = (uint64_t{rd()} << 32) ^ rd();
  admission::RateLimit probe(per_source.max, per_source.interval);
  if (!probe.unlimited()) table_.resize(kEntries);
}

size_t ReplyLimiter::set_of(const net::SourceKey& k) const noexcept {
  uint64_t w[3] = {0, 0, 0};
  std::memcpy(w, k.bytes.data(), k.bytes.size());
  uint64_t h = mix(seed_ ^ w[0]);
  h = mix(h ^ w[1]);
  h = mix(h ^ w[2]);
  return static_cast<size_t>(h % (kEntries / kWays));
}

ReplyLimiter::Verdict ReplyLimiter::take(const net::SourceKey& source, Clock::time_point now) {
  if (!table_.empty()) {
    Entry* set = &table_[set_of(source) * kWays];
    Entry* e = nullptr;
    Entry* victim = set;
    for (size_t i = 0; i < kWays && !e; ++i) {
      if (set[i].used && set[i].key == source)
        e = &set[i];
      else if (!set[i].used ? victim->used : (victim->used && set[i].last < victim->last))
        victim = &set[i];
    }
    if (!e) {
      e = victim;  // a free way, or the least recently used one
      e->key = source;
      e->used = true;
      e->bucket = admission::RateLimit(per_source_.max, per_source_.interval);
    }
    e->last = ++use_count_;
    if (!e->bucket.try_take(now)) return Verdict::over_source;
  }
  if (!all_.try_take(now)) return Verdict::over_all;
  return Verdict::reply;
}

size_t ReplyLimiter::sources_tracked() const noexcept {
  size_t n = 0;
  for (const Entry& e : table_) n += e.used;
  return n;
}

}  // namespace superd::inloop
