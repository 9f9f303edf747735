// The dynamic UID pool: pure bookkeeping, no system call, O(1) per lease and release at any
// occupancy. What may not be leased (a user in passwd, a foreign process or IPC object, a
// quarantined UID) is learnt *outside* this path, by the census, and recorded here as block bits.
//
// Order: a UID that was never leased counts as released infinitely long ago, so fresh UIDs go
// out first (in ascending order), then released ones in FIFO order: the UID released longest
// ago is leased next, so a recycled UID comes back as late as possible.
//
// Every UID is in exactly one place: the fresh region, the FIFO ring, held, or parked (blocked
// while neither held nor queued; it rejoins the ring's tail when its last block bit clears).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace superd::uid_pool {

enum Block : uint8_t {
  kStaticUser = 1 << 0,      // in passwd or group
  kForeignProcess = 1 << 1,  // a process we do not own runs with it
  kForeignIpc = 1 << 2,      // an IPC object we did not clean is owned by it
  kQuarantined = 1 << 3,     // its cleanup failed; never reused while superd runs
  kOrphan = 1 << 4,          // a previous daemon's lease, not swept yet
  kZygoteLost = 1 << 5,      // its zygote died before answering: until the census finds it clear
};
constexpr int kBlockKinds = 6;
const char* block_name(int bit_index) noexcept;  // "static-user", ... for bit 1 << bit_index

// What blocks the UIDs that are not held (for `superd status`): a count per reason and the first
// few UIDs with their reasons.
struct BlockedSummary {
  uint32_t unavailable = 0;  // not held, but blocked for at least one reason
  uint32_t by_reason[kBlockKinds] = {};
  std::vector<std::pair<uint32_t, uint8_t>> sample;  // (uid, block bits), at most `max_sample`
};

class Pool {
 public:
  Pool(uint32_t first, uint32_t last);
  Pool(Pool&&) noexcept = default;
  // A deep copy (tests compare a prediction with what a copy then does).
  Pool copy() const;

  // The next leasable UID, or nullopt when the pool is exhausted. Amortised O(1).
  std::optional<uint32_t> lease() noexcept;
  // The UIDs the next lease() calls would return, in order, if nothing changes meanwhile: at
  // most `n` into `out`, looking at no more than 4n + 64 places; returns how many. For work done
  // ahead of a connection (sandbox/idmap.hpp: user namespaces built while the loop is idle).
  size_t upcoming(uint32_t* out, size_t n) const noexcept;
  // Takes a specific UID (a named lease, an orphan found at start); false if not available.
  bool lease_exact(uint32_t uid) noexcept;
  // Returns a held UID; it goes to the ring's tail (or is parked if blocked).
  void release(uint32_t uid) noexcept;

  void block(uint32_t uid, Block why) noexcept;
  void unblock(uint32_t uid, Block why) noexcept;
  // Clears `why` from every UID that is not in `ids` and sets it on those that are (census).
  template <typename Range>
  void set_blocked_exactly(Block why, const Range& ids) noexcept;

  bool contains(uint32_t uid) const noexcept { return uid >= first_ && uid - first_ < size_; }
  bool is_held(uint32_t uid) const noexcept { return contains(uid) && (state_[uid - first_] & kHeld); }
  uint8_t blocks(uint32_t uid) const noexcept { return contains(uid) ? state_[uid - first_] & kBlockMask : 0; }
  uint32_t first() const noexcept { return first_; }
  uint32_t last() const noexcept { return first_ + size_ - 1; }
  uint32_t size() const noexcept { return size_; }
  uint32_t held() const noexcept { return held_; }
  uint32_t quarantined() const noexcept { return quarantined_; }
  // O(size): for status requests, never the connection path.
  BlockedSummary blocked_summary(size_t max_sample = 32) const;

 private:
  static constexpr uint8_t kHeld = 1 << 6;
  static constexpr uint8_t kQueued = 1 << 7;
  static constexpr uint8_t kBlockMask = 0x3f;

  bool parked(uint32_t off) const noexcept { return off < fresh_ && !(state_[off] & (kHeld | kQueued)); }
  void push(uint32_t off) noexcept;
  void take(uint32_t off) noexcept;

  uint32_t first_, size_;
  std::unique_ptr<uint8_t[]> state_;
  std::unique_ptr<uint32_t[]> ring_;  // capacity size_: each UID is queued at most once
  uint32_t head_ = 0, count_ = 0;
  uint32_t fresh_ = 0;  // offsets [fresh_, size_) were never leased
  uint32_t held_ = 0, quarantined_ = 0;
};

template <typename Range>
void Pool::set_blocked_exactly(Block why, const Range& ids) noexcept {
  // Two passes over the range: O(size), fine for a census that runs every few seconds.
  std::unique_ptr<uint8_t[]> mark(new uint8_t[size_]());
  for (uint32_t id : ids)
    if (contains(id)) mark[id - first_] = 1;
  for (uint32_t off = 0; off < size_; ++off) {
    bool has = state_[off] & why;
    if (mark[off] && !has)
      block(first_ + off, why);
    else if (!mark[off] && has)
      unblock(first_ + off, why);
  }
}

}  // namespace superd::uid_pool
