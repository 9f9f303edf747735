// The cleanup batch: leases of reaped instances wait here for one IPC sweep, and are dropped
// (record cleared, UID returned) only after it. Taking the leases by value makes the teardown
// order a property of the types: nothing else holds them, so no UID returns before its IPC is
// gone. A UID whose objects cannot all be removed is quarantined before its lease drops.
//
// Batched because one scan of /proc/sysvipc, /dev/shm and the mqueue view serves any number of
// UIDs: every instance reaped within one turn of the loop shares it.
#pragma once

#include <vector>

#include "cleanup/ipc.hpp"
#include "uid_pool/lease.hpp"

namespace superd::cleanup {

class Batch {
 public:
  // `host_shm`: the instance could write to the host's /dev/shm (it had no private one), so the
  // sweep must look there too.
  void add(uid_pool::Lease lease, bool host_shm);
  bool empty() const noexcept { return leases_.empty(); }

  // Removes every IPC object of the batch's UIDs, quarantines the UIDs with objects left, then
  // drops the leases. Returns what could not be removed (the caller logs it once); the batch
  // is empty afterwards.
  std::vector<ipc::Failure> run(const ipc::Roots& roots);

 private:
  std::vector<uid_pool::Lease> leases_;
  bool host_shm_ = false;
};

}  // namespace superd::cleanup
