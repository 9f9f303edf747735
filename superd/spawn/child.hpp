// Internal: the argument block handed to the child function (see child.cpp).
#pragma once

#include "spawn/plan.hpp"

namespace superd::spawn::detail {

// The stack a child runs on (spawn.cpp's one reused stack; a zygote's for its instances).
constexpr size_t kStackSize = 64 * 1024;
// open_tree() slots of a mount plan the scratch arrays hold: the state/cache/logs directories
// and bind paths of one service.
constexpr int kMaxSlots = 256;

struct ChildArgs {
  const InstancePlan* plan;
  ChildError* err;  // in the parent's memory (CLONE_VM): written only on failure
  const int* caught;
  size_t n_caught;
  int* slots;  // scratch for open_tree fds, plan.mounts.slots entries
  // Cloned by a zygote: the per-service mounts, the bounding set, no_new_privs and the filter's
  // base are inherited; only the per-instance steps and the filter's tail remain.
  bool from_zygote = false;
};

int child_main(void* arg) noexcept;

// Before the clone: the plan's idmapped trees into their mount slots. False when their count
// is not the mount plan's (the daemon prepares one per idmapped directory).
inline bool fill_idmap_slots(const InstancePlan& p, int* slots) noexcept {
  const auto& dirs = p.service->mounts.idmapped;
  if (p.n_idmap_fds != dirs.size()) return false;
  for (size_t i = 0; i < dirs.size(); ++i) slots[dirs[i].slot] = p.idmap_fds[i];
  return true;
}

}  // namespace superd::spawn::detail
