// admission::Policy: one service's admission decision, composed of its Gate (allow/deny and the
// connection limits), its AccessTimes and its RateLimit, in that order. The stream and datagram
// paths both ask it, so the order is written once:
//   allow/deny -> (stream: max_connections, per_source) -> access_times -> [guard] -> rate
// `guard` is the caller's own check between access_times and the rate limit (the datagram
// loop guards); a guard refusal takes no rate token. Pure: the caller passes the time.
//
// A stream connection over the rate with connection_rate_action = "defer" is deferred until
// the bucket has a token; a datagram is refused instead (the datagram path defers before it
// reads, see `rate_deferred`).
#pragma once

#include <chrono>
#include <string>

#include "admission/access_times.hpp"
#include "admission/admission.hpp"
#include "admission/rate.hpp"

namespace superd::admission {

enum class Path { stream, datagram };

struct Decision {
  enum class Kind { admit, refuse, defer };
  Kind kind = Kind::admit;
  std::string reason;                    // refuse: for the REFUSE line
  RateLimit::Clock::time_point until{};  // defer: when the rate limit has room
  bool admitted() const noexcept { return kind == Kind::admit; }
};

// A caller's extra check: a refusal reason, or empty to go on.
struct Guard {
  std::string (*check)(const void* ctx, const sockaddr* peer) = nullptr;
  const void* ctx = nullptr;
};

class Policy {
 public:
  using Clock = RateLimit::Clock;

  // max_connection_rate / connection_rate_interval as configured (the REFUSE line names them).
  struct Rate {
    uint32_t max = 0;  // 0: unlimited
    std::chrono::milliseconds interval{1000};
    bool defer = false;  // connection_rate_action = "defer"
  };

  Policy(Limits limits, AccessTimes access, Rate rate)
      : gate_(std::move(limits)), access_(std::move(access)), rate_(rate.max, rate.interval), spec_(rate) {}

  // `peer`: the IP peer, nullptr for UNIX; `minute_of_day`: local time for access_times (-1:
  // read the clock, only if the service has access_times). With
  // `rate_taken` the caller already holds a rate token (a deferred connection let through).
  Decision decide(Path path, const sockaddr* peer, const net::SourceKey& source, Clock::time_point now,
                  int minute_of_day = -1, bool rate_taken = false, Guard guard = {});

  // Datagrams: whether to stop reading until the rate limit has room (the "defer" action).
  bool rate_deferred(Clock::time_point now) const noexcept {
    return spec_.defer && !rate_.unlimited() && rate_.next_allowed(now) > now;
  }
  // The rate alone (a wait-mode start, a deferred connection's retry): takes a token if it can.
  bool take_rate(Clock::time_point now) noexcept { return rate_.unlimited() || rate_.try_take(now); }
  Clock::time_point rate_room_at(Clock::time_point now) const noexcept { return rate_.next_allowed(now); }

  Gate& gate() noexcept { return gate_; }
  const Gate& gate() const noexcept { return gate_; }

 private:
  Gate gate_;
  AccessTimes access_;
  RateLimit rate_;
  Rate spec_;
};

}  // namespace superd::admission
