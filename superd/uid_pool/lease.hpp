// A UID lease as a resource: `uid_pool::Lease` is move-only, and its destructor does the release
// in the documented order — the lease record is cleared, then the UID goes back to the pool (or
// stays parked there if quarantined). `Leases` is the pool and its lease table as one: the only
// way to get a Lease, and the only code outside cleanup/ that returns a UID.
//
// Teardown order (DESIGN.md): process gone -> IPC removed -> tmp/runtime removed -> UID returned.
// The types carry it: an Instance owns its Lease; when the instance is reaped the Lease moves
// into a cleanup::Batch, which drops it only after the IPC sweep.
//
// Strategy of a named lease (as systemd's dynamic-user.c pick_uid): a stable UID for a name,
// tried in phases — first the current owner of the name's existing directory (no chown needed),
// then a hash of the name, then the UIDs after it; at most kMaxNamedProbes probes in all.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uid_pool/lease_table.hpp"
#include "uid_pool/pool.hpp"

namespace superd::uid_pool {

class Leases;

class Lease {
 public:
  Lease() noexcept = default;  // empty: holds nothing (a static user's instance)
  Lease(Lease&& o) noexcept : owner_(o.owner_), uid_(o.uid_) { o.owner_ = nullptr; }
  Lease& operator=(Lease&& o) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { reset(); }

  explicit operator bool() const noexcept { return owner_ != nullptr; }
  uint32_t uid() const noexcept { return uid_; }
  // The instance's main process, for the lease record (the orphan sweep, `superd status`).
  void set_pid(pid_t pid) noexcept;
  // Its cleanup failed, or an instance may still run with it unseen: never lease it again while
  // superd runs. The record is still cleared and the UID still leaves the held set on release.
  void quarantine() noexcept;
  // Releases now: the record is cleared, then the UID returned.
  void reset() noexcept;

 private:
  friend class Leases;
  Lease(Leases* owner, uint32_t uid) noexcept : owner_(owner), uid_(uid) {}
  Leases* owner_ = nullptr;
  uint32_t uid_ = 0;
};

// What goes into the lease record at acquisition.
struct LeaseInfo {
  uint64_t serial = 0;
  int64_t started_ms = 0;      // CLOCK_REALTIME, ms
  std::string_view service;    // truncated to the record's field
  std::string_view user = {};  // the names file's user name; empty: "superd-UID"
  NameKind kind = NameKind::user;
};

class Leases {
 public:
  static constexpr uint32_t kMaxNamedProbes = 4096;

  Leases(Pool& pool, LeaseTable& table) noexcept : pool_(pool), table_(table) {}
  Leases(const Leases&) = delete;
  Leases& operator=(const Leases&) = delete;

  // The next free UID, recorded. No system call (the record is a store into a mapping).
  std::optional<Lease> acquire(const LeaseInfo& info) noexcept;
  // A stable UID for `name` (strategy in the header comment); `prefer` is tried first.
  std::optional<Lease> acquire_named(std::string_view name, std::optional<uint32_t> prefer,
                                     const LeaseInfo& info) noexcept;

  // An upgrade's hand-over: the leases the image before held, taken again with their records as
  // they were (and their names), before hold_orphans() sees the rest. By UID.
  struct Handed {
    uint32_t uid = 0;
    std::string user;  // the names file's name ("" for "superd-UID")
    NameKind kind = NameKind::user;
  };
  std::map<uint32_t, Lease> readopt(const std::vector<Handed>& handed);

  // Leases a previous daemon left behind: each is blocked (kOrphan) and recorded again, so a
  // daemon killed once more finds them; then returned or quarantined by the orphan sweep.
  std::vector<LeaseRecord> hold_orphans();
  void orphan_swept(uint32_t uid) noexcept;        // clean: the record goes, the UID is free
  void orphan_quarantined(uint32_t uid) noexcept;  // something survived: never reused

  static int64_t now_ms() noexcept;  // CLOCK_REALTIME in ms, for LeaseInfo::started_ms

 private:
  friend class Lease;
  Lease take(uint32_t uid, const LeaseInfo& info) noexcept;
  void release(uint32_t uid) noexcept;
  Pool& pool_;
  LeaseTable& table_;
};

}  // namespace superd::uid_pool
