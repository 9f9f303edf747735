// Admission of one service's connections: allow/deny CIDR lists, the total number of live
// instances and the number per source (IP address, or peer UID for UNIX sockets). Pure
// bookkeeping over plain values (the config module fills a Limits at load); the daemon asks
// before spawning and reports the end.
// At the total limit the daemon stops accepting (the backlog holds the rest, as tcpserver does);
// the service is never disabled.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "util/net.hpp"

namespace superd::admission {

enum class Verdict { admit, denied, not_allowed, per_source_limit, total_limit };
const char* verdict_reason(Verdict v) noexcept;

// A service's [socket] keys allow, deny, max_connections and max_connections_per_source.
struct Limits {
  std::vector<net::Cidr> allow, deny;  // allow empty: everybody (subject to deny)
  uint32_t max_connections = 64;       // systemd's MaxConnections= default
  uint32_t max_per_source = 0;         // 0: only max_connections bounds it
};

class Gate {
 public:
  explicit Gate(Limits limits);

  // `peer` is the IP peer or nullptr for UNIX; `source` the per-source key.
  Verdict check(const sockaddr* peer, const net::SourceKey& source) const;
  void enter(const net::SourceKey& source);
  void leave(const net::SourceKey& source);

  // A connection whose PROXY header is still being read: it counts toward max_connections (so
  // headers in flight are bounded) but toward no source, as its real client is not known yet.
  // The daemon releases it before it asks check() for the real client.
  void hold() noexcept { ++live_; }
  void unhold() noexcept { live_ -= live_ > 0; }

  bool full() const noexcept { return live_ >= limits_.max_connections; }
  uint32_t live() const noexcept { return live_; }
  uint32_t live_from(const net::SourceKey& source) const;

 private:
  Limits limits_;
  uint32_t live_ = 0;
  std::unordered_map<net::SourceKey, uint32_t, net::SourceKeyHash> per_source_;
};

}  // namespace superd::admission
