// IPC objects a UID can leave behind after its processes are gone, the RemoveIPC= set: SysV
// shared memory, semaphores and message queues (read from /proc/sysvipc/*), POSIX shared
// memory (files in /dev/shm) and POSIX message queues. An object belongs to a UID if its owner
// or creator UID or GID is that ID (UID = GID for dynamic users). One scan serves any number of
// UIDs, so the daemon batches releases.
//
// POSIX queues are only visible as files of an mqueue filesystem, and most hosts mount none at
// /dev/mqueue: checking a path that does not exist finds nothing while queues leak. So the
// daemon mounts its own, in a mount namespace of its own (mount_private_mqueue), and every scan
// here looks through that view.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

namespace superd::cleanup::ipc {

enum class Kind { shm, sem, msg, posix_shm, mqueue };

struct Object {
  Kind kind;
  int id = -1;       // SysV id
  std::string name;  // file name under /dev/shm or the mqueue view
  uint32_t owner;    // the matching UID/GID
  // Who created it (SysV cuid): an owner may hand an object to any UID with IPC_SET, so an
  // object whose owner is not its creator was given away, not left behind. Files: the owner.
  uint32_t creator = 0;
};

// Where to look (overridable for tests).
struct Roots {
  std::string sysvipc = "/proc/sysvipc";
  std::string dev_shm = "/dev/shm";    // empty: skip (every instance had a private /dev/shm)
  std::string mqueue = "/dev/mqueue";  // the daemon passes its private view (see below)
};

// Unshares the calling (single-threaded) process's mount namespace, lets host mounts still
// propagate in (MS_SLAVE) but none of ours out, and mounts the IPC namespace's mqueue
// filesystem at `dir` (created 0700). The mount dies with the namespace: nothing is left on
// the host if superd is killed.
std::error_code mount_private_mqueue(const std::string& dir);

// Objects owned by an ID in [lo, hi].
std::vector<Object> owned_in_range(uint32_t lo, uint32_t hi, const Roots& roots = {});

struct Failure {
  uint32_t owner;
  Object object;
  int err;
};
// Removes one object; 0, or the errno (an object already gone counts as removed).
int remove(const Object& o, const Roots& roots = {});

// Removes every object owned by one of `ids`; returns what could not be removed.
std::vector<Failure> remove_owned_by(const std::unordered_set<uint32_t>& ids, const Roots& roots = {});

const char* kind_name(Kind k) noexcept;

}  // namespace superd::cleanup::ipc

// Called by its short name across superd (ipc::...); it lives in cleanup/.
namespace superd {
namespace ipc = cleanup::ipc;
}  // namespace superd
