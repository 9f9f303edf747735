// admission::Policy: see policy.hpp for the order.
#include "admission/policy.hpp"

#include <fmt/format.h>

namespace superd::admission {

Decision Policy::decide(Path path, const sockaddr* peer, const net::SourceKey& source, Clock::time_point now,
                        int minute_of_day, bool rate_taken, Guard guard) {
  auto refuse = [](std::string why) { return Decision{Decision::Kind::refuse, std::move(why), {}}; };
  Verdict v = gate_.check(peer, source);
  // A datagram is no connection: only allow/deny apply to it, not the connection limits.
  bool counts = path == Path::stream || v == Verdict::denied || v == Verdict::not_allowed;
  if (v != Verdict::admit && counts) return refuse(verdict_reason(v));
  if (!access_.empty() && !access_.allows(minute_of_day < 0 ? AccessTimes::minute_of_day_now() : minute_of_day))
    return refuse("outside access_times " + access_.to_string());
  if (guard.check) {
    if (std::string why = guard.check(guard.ctx, peer); !why.empty()) return refuse(std::move(why));
  }
  if (!rate_taken && !rate_.unlimited() && !rate_.try_take(now)) {
    if (path == Path::stream && spec_.defer) return Decision{Decision::Kind::defer, {}, rate_.next_allowed(now)};
    return refuse(fmt::format("max_connection_rate={} per {}ms", spec_.max, spec_.interval.count()));
  }
  return {};
}

}  // namespace superd::admission
