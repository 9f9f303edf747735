// cgroup v2 as a resource bound for instances (memory_max, tasks_max, cpu_weight). Usable only
// where the host has a cgroup2 hierarchy whose cgroup of superd offers both the memory and the
// pids controllers; many hosts (this one: cgroup v1, plus a v2 mount with hugetlb only) do not.
// superd then says so once at start-up and instances are bounded by their rlimits (limits.nproc
// defaults to 512) and the private_tmp_size budget. superd never touches a cgroup it did not
// create.
//
// Known gap: per-instance cgroups (clone3 CLONE_INTO_CGROUP into a delegated superd subtree,
// cgroup.kill at the end) are not built yet; on a host that has the controllers superd says that
// too, rather than pretend the keys apply.
#pragma once

#include <string>

namespace superd::sandbox::cgroup {

struct Support {
  bool usable = false;
  std::string mount;        // the cgroup2 mount point ("" if none)
  std::string own;          // superd's own cgroup under it
  std::string controllers;  // what that cgroup offers, as the kernel lists it
  std::string why;          // when not usable: the reason, for the start-up line
};

// Reads /proc/self/mountinfo and /proc/self/cgroup (`proc` overridable for tests).
Support detect(const std::string& proc = "/proc/self");

}  // namespace superd::sandbox::cgroup
