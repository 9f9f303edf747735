// Lease records under <runtime_root>/superd/dynamic-uid/: one file, "leases", mapped shared into
// superd, with a fixed 64-byte slot per UID of the range. Recording or clearing a lease is a
// store into that mapping: no system call on the connection path, yet `superd status`, an NSS
// module or a restarted superd can read who holds which UID. The daemon holds an exclusive
// flock on the file, so two daemons never share one runtime root.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "util/unique_fd.hpp"

namespace superd::uid_pool {

struct LeaseRecord {
  uint32_t uid;          // 0: free slot
  int32_t pid;           // host PID of the instance's main process, 0 while spawning
  uint64_t serial;       // per-connection serial number (%c)
  int64_t started_ms;    // CLOCK_REALTIME, ms
  char service[40];      // NUL-terminated, truncated
};
static_assert(sizeof(LeaseRecord) == 64);

class LeaseTable {
 public:
  LeaseTable() = default;
  LeaseTable(LeaseTable&&) noexcept;
  LeaseTable& operator=(LeaseTable&&) noexcept;
  ~LeaseTable();

  // Creates or opens <dir>/leases for [first, last] and takes the lock. Records a previous
  // daemon left behind are handed out once by take_orphans(); the file starts empty.
  static LeaseTable open(const std::string& dir, uint32_t first, uint32_t last, std::error_code& ec);
  // Opens read-only without the lock (for `superd status`).
  static LeaseTable open_readonly(const std::string& dir, std::error_code& ec);

  void record(uint32_t uid, int32_t pid, uint64_t serial, int64_t started_ms, std::string_view service) noexcept;
  void set_pid(uint32_t uid, int32_t pid) noexcept;
  void clear(uint32_t uid) noexcept;
  std::vector<LeaseRecord> live() const;  // every occupied slot
  std::vector<LeaseRecord> take_orphans() { return std::move(orphans_); }

  bool valid() const noexcept { return slots_ != nullptr; }
  uint32_t first() const noexcept { return first_; }
  uint32_t size() const noexcept { return size_; }

 private:
  LeaseRecord* slot(uint32_t uid) noexcept;
  UniqueFd fd_;
  LeaseRecord* slots_ = nullptr;
  void* map_ = nullptr;
  size_t map_len_ = 0;
  uint32_t first_ = 0, size_ = 0;
  std::vector<LeaseRecord> orphans_;
};

}  // namespace superd::uid_pool
