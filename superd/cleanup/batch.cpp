// cleanup::Batch: see batch.hpp.
#include "cleanup/batch.hpp"

#include <unordered_set>

namespace superd::cleanup {

void Batch::add(uid_pool::Lease lease, bool host_shm) {
  host_shm_ = host_shm_ || host_shm;
  leases_.push_back(std::move(lease));
}

std::vector<ipc::Failure> Batch::run(const ipc::Roots& roots) {
  std::vector<uid_pool::Lease> leases;
  leases.swap(leases_);
  std::unordered_set<uint32_t> ids;
  for (const auto& l : leases) ids.insert(l.uid());
  ipc::Roots where = roots;
  if (!host_shm_) where.dev_shm.clear();  // every instance had its own /dev/shm
  host_shm_ = false;
  std::vector<ipc::Failure> failures = ipc::remove_owned_by(ids, where);
  std::unordered_set<uint32_t> left;
  for (const auto& f : failures) left.insert(f.owner);
  for (auto& l : leases)
    if (left.count(l.uid())) l.quarantine();
  return failures;  // `leases` drops here: records cleared, UIDs returned (or parked)
}

}  // namespace superd::cleanup
