// Idmapped state directories (state_directory_idmap = true): each instance sees its state,
// cache and logs directories as owned by its own fresh UID and GID, while on disk they belong
// to the service's stable owner (a named lease, see daemon/idmap_dirs.cpp).
//
// Mechanism (kernel Documentation/filesystems/idmappings.rst): an idmapped mount translates
// the on-disk owner through a user namespace's map. A file whose disk UID is K appears as the
// UID the namespace maps K *to* (K is read as an id inside the namespace, the result is the
// outside id); a file the instance creates with fsuid U lands on disk as the id that maps to
// U. So the map is one line, "OWNER UID 1", for uid_map and gid_map alike: the owner shows as
// the instance, every other owner (root, an old UID) has no mapping and shows as the overflow
// UID (nobody), and the instance can create files only as the owner.
//
// Who does what:
//   - The daemon builds the user namespace: a helper cloned with CLONE_NEWUSER that only
//     pauses; the daemon writes its uid_map/gid_map from outside, opens /proc/PID/ns/user and
//     kills it. The helper runs nothing else; the instance never enters the namespace and
//     gains no capability from it: the namespace is only the mount's translation table.
//   - Per connection the daemon clones the host directory (open_tree OPEN_TREE_CLONE) and sets
//     MOUNT_ATTR_IDMAP on the detached copy; the fd travels with the request (zygote or
//     launch), and the child only move_mount()s it onto its mountpoint (one syscall, no
//     allocation: mounts.cpp, Op::attach_tree with a per-instance slot).
//   - Creating a namespace costs ~95 us of CPU and ~1 ms of wall time on a loaded 2-core box
//     (the helper must be scheduled to die); open_tree + mount_setattr ~4 us. So the Cache
//     keeps one namespace per (instance UID, owner) pair, at most 256, and a killed helper is
//     reaped later rather than waited for. And the daemon builds them *ahead*: for the UIDs
//     the pool will hand out next (uid_pool::Pool::upcoming), one per turn of the loop, behind
//     whatever I/O is ready (daemon/idmap_dirs.cpp, prefill_idmap), so with a wide pool of
//     fresh UIDs a connection still finds its namespace built.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "sandbox/mounts.hpp"
#include "util/unique_fd.hpp"

namespace superd::sandbox::idmap {

// A user namespace whose maps hold one line each, "owner uid 1" (UIDs and GIDs alike; the
// helper's pid goes to `helper` for the caller to reap: it has been sent SIGKILL).
UniqueFd make_userns(uid_t owner, uid_t uid, pid_t& helper, std::error_code& ec) noexcept;

// A detached copy of the directory at `path`, idmapped through `userns`: ready for move_mount.
UniqueFd detached_tree(const char* path, int userns, std::error_code& ec) noexcept;

// The name of a filesystem type (statfs f_type): "ext4", "ramfs", "vfat"...; hex if unknown.
std::string fs_type_name(int64_t f_type);

// Whether `path` can be idmapped: a trial mount_setattr on a detached copy. Empty when it can;
// otherwise the reason, naming the filesystem type ("ramfs does not support idmapped mounts").
std::string check_support(const std::string& path);

// User namespaces by (instance UID, owner), at most kMaxEntries (then the oldest goes first).
// Small on purpose: every fd the daemon holds is copied by each clone of the direct spawn path
// (a service without zygotes, e.g. sandbox = false, copies the fd table and closes it again
// before exec). At 8192 entries a sandbox = false service in the same daemon fell to 0.20x
// rawspawn (bench/compare.py --full, superd-nosb beside superd-idmap). 256 covers the lookahead
// (prefill_idmap's 96) and keeps a small pool warm; a larger pool builds one namespace per
// connection, ahead of it.
class Cache {
 public:
  static constexpr size_t kMaxEntries = 256;
  Cache() = default;
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  ~Cache();
  // The namespace fd (borrowed; valid until the next get()); -1 with `ec` on failure. A miss
  // builds it here, on the connection's path, and counts in built_on_connection().
  int get(uid_t uid, uid_t owner, std::error_code& ec) noexcept;
  // Builds the namespace for a connection still to come (the loop's idle work); false if it
  // was there already or could not be built. Counts in built_ahead().
  bool build_ahead(uid_t uid, uid_t owner) noexcept;
  bool has(uid_t uid, uid_t owner) const noexcept { return map_.count({uid, owner}) != 0; }
  size_t size() const noexcept { return map_.size(); }
  uint64_t created() const noexcept { return created_; }
  uint64_t built_ahead() const noexcept { return ahead_; }
  uint64_t built_on_connection() const noexcept { return created_ - ahead_; }

 private:
  int build(uid_t uid, uid_t owner, std::error_code& ec) noexcept;
  void reap(bool wait) noexcept;
  std::map<std::pair<uid_t, uid_t>, std::pair<UniqueFd, uint64_t>> map_;  // -> fd, insertion stamp
  std::map<uint64_t, std::pair<uid_t, uid_t>> order_;                     // stamp -> key (the oldest first)
  std::vector<pid_t> dying_;                                              // killed helpers, reaped later
  uint64_t created_ = 0, ahead_ = 0;
};

// The detached idmapped trees of one instance, one per idmapped directory, in the mount
// plan's order; the plan borrows their fds (spawn::InstancePlan::idmap_fds).
struct Trees {
  std::vector<UniqueFd> fds;
};
// Builds `out` for an instance running as `uid`, over the mount plan's idmapped directories,
// owned on disk by `owner`. Empty on success; otherwise what failed.
std::string make_trees(Cache& cache, const std::vector<IdmapDir>& dirs, uid_t uid, uid_t owner, Trees& out);

}  // namespace superd::sandbox::idmap
