#include "admission/admission.hpp"

#include <algorithm>

namespace superd::admission {

const char* verdict_reason(Verdict v) noexcept {
  switch (v) {
    case Verdict::admit:
      return "admitted";
    case Verdict::denied:
      return "denied by deny list";
    case Verdict::not_allowed:
      return "not in allow list";
    case Verdict::per_source_limit:
      return "max_connections_per_source reached";
    case Verdict::total_limit:
      return "max_connections reached";
  }
  return "?";
}

Gate::Gate(Limits limits) : limits_(std::move(limits)) {
  per_source_.reserve(std::min<uint32_t>(limits_.max_connections, 4096));
}

Verdict Gate::check(const sockaddr* peer, const net::SourceKey& source) const {
  if (peer) {
    // deny wins over allow, as in xinetd's no_access vs only_from for equal specificity.
    for (const net::Cidr& c : limits_.deny)
      if (c.contains(peer)) return Verdict::denied;
    if (!limits_.allow.empty() &&
        std::none_of(limits_.allow.begin(), limits_.allow.end(), [&](const net::Cidr& c) { return c.contains(peer); }))
      return Verdict::not_allowed;
  }
  if (full()) return Verdict::total_limit;
  if (limits_.max_per_source && live_from(source) >= limits_.max_per_source) return Verdict::per_source_limit;
  return Verdict::admit;
}

void Gate::enter(const net::SourceKey& source) {
  ++live_;
  if (limits_.max_per_source) ++per_source_[source];
}

void Gate::leave(const net::SourceKey& source) {
  if (live_ > 0) --live_;
  if (!limits_.max_per_source) return;
  auto it = per_source_.find(source);
  if (it != per_source_.end() && --it->second == 0) per_source_.erase(it);
}

uint32_t Gate::live_from(const net::SourceKey& source) const {
  auto it = per_source_.find(source);
  return it == per_source_.end() ? 0 : it->second;
}

}  // namespace superd::admission
