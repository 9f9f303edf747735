#include "uid_pool/pool.hpp"

#include <algorithm>

namespace superd::uid_pool {

Pool::Pool(uint32_t first, uint32_t last)
    : first_(first),
      size_(last - first + 1),
      state_(new uint8_t[size_]()),
      // Left uninitialised on purpose: pages of a large ring are only touched when used.
      ring_(new uint32_t[size_]) {}

Pool Pool::copy() const {
  Pool p(first_, first_ + size_ - 1);
  std::copy(state_.get(), state_.get() + size_, p.state_.get());
  for (uint32_t i = 0; i < count_; ++i) p.ring_[(head_ + i) % size_] = ring_[(head_ + i) % size_];  // the live part
  p.head_ = head_, p.count_ = count_, p.fresh_ = fresh_, p.held_ = held_, p.quarantined_ = quarantined_;
  return p;
}

void Pool::push(uint32_t off) noexcept {
  ring_[(head_ + count_) % size_] = off;
  ++count_;
  state_[off] |= kQueued;
}

void Pool::take(uint32_t off) noexcept {
  state_[off] |= kHeld;
  ++held_;
}

std::optional<uint32_t> Pool::lease() noexcept {
  // Fresh UIDs first. One held or queued here was taken by lease_exact() and lives elsewhere;
  // a blocked one becomes parked. Either way it is passed over once, so the loop is amortised O(1).
  while (fresh_ < size_) {
    uint32_t off = fresh_++;
    if (state_[off] & (kBlockMask | kHeld | kQueued)) continue;
    take(off);
    return first_ + off;
  }
  while (count_ > 0) {
    uint32_t off = ring_[head_];
    head_ = (head_ + 1) % size_;
    --count_;
    state_[off] &= static_cast<uint8_t>(~kQueued);
    // Held: lease_exact() took it while queued; release() re-queues it as it is no longer here.
    if (state_[off] & (kBlockMask | kHeld)) continue;
    take(off);
    return first_ + off;
  }
  return std::nullopt;
}

size_t Pool::upcoming(uint32_t* out, size_t n) const noexcept {
  // lease()'s two loops, without taking anything: fresh UIDs first, then the ring from its head.
  size_t got = 0, budget = 4 * n + 64;
  for (uint32_t off = fresh_; off < size_ && got < n && budget > 0; ++off, --budget)
    if (!(state_[off] & (kBlockMask | kHeld | kQueued))) out[got++] = first_ + off;
  for (uint32_t i = 0; i < count_ && got < n && budget > 0; ++i, --budget) {
    uint32_t off = ring_[(head_ + i) % size_];
    if (!(state_[off] & (kBlockMask | kHeld))) out[got++] = first_ + off;
  }
  return got;
}

bool Pool::lease_exact(uint32_t uid) noexcept {
  // A queued UID keeps its ring entry (removing it would be O(n)); lease() skips it while held.
  if (!contains(uid)) return false;
  uint32_t off = uid - first_;
  if (state_[off] & (kHeld | kBlockMask)) return false;
  take(off);
  return true;
}

void Pool::release(uint32_t uid) noexcept {
  if (!is_held(uid)) return;
  uint32_t off = uid - first_;
  state_[off] &= static_cast<uint8_t>(~kHeld);
  --held_;
  // Still queued (a stale entry from lease_exact) or still in the fresh region: already placed.
  if (state_[off] & (kBlockMask | kQueued) || off >= fresh_) return;
  push(off);
}

void Pool::block(uint32_t uid, Block why) noexcept {
  if (!contains(uid)) return;
  uint32_t off = uid - first_;
  if (why == kQuarantined && !(state_[off] & kQuarantined)) ++quarantined_;
  state_[off] |= why;
}

void Pool::unblock(uint32_t uid, Block why) noexcept {
  if (!contains(uid)) return;
  uint32_t off = uid - first_;
  if (!(state_[off] & why)) return;
  if (why == kQuarantined) --quarantined_;
  state_[off] &= static_cast<uint8_t>(~why);
  if (!(state_[off] & kBlockMask) && parked(off)) push(off);
}

const char* block_name(int bit_index) noexcept {
  static const char* const kNames[kBlockKinds] = {"static-user", "foreign-process", "foreign-ipc",
                                                  "quarantined", "orphan-unswept",  "zygote-lost"};
  return bit_index >= 0 && bit_index < kBlockKinds ? kNames[bit_index] : "?";
}

BlockedSummary Pool::blocked_summary(size_t max_sample) const {
  BlockedSummary out;
  for (uint32_t off = 0; off < size_; ++off) {
    uint8_t b = state_[off] & kBlockMask;
    if (!b || (state_[off] & kHeld)) continue;
    ++out.unavailable;
    for (int k = 0; k < kBlockKinds; ++k)
      if (b & (1 << k)) ++out.by_reason[k];
    if (out.sample.size() < max_sample) out.sample.emplace_back(first_ + off, b);
  }
  return out;
}

}  // namespace superd::uid_pool
