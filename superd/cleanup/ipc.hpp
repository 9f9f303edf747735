// IPC objects a UID can leave behind after its processes are gone, the RemoveIPC= set: SysV
// shared memory, semaphores and message queues (read from /proc/sysvipc/*), POSIX shared
// memory (files in /dev/shm) and POSIX message queues (/dev/mqueue). An object belongs to a
// UID if its owner or creator UID or GID is that ID (UID = GID for dynamic users).
// One scan serves any number of UIDs, so the daemon batches releases.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace superd::ipc {

enum class Kind { shm, sem, msg, posix_shm, mqueue };

struct Object {
  Kind kind;
  int id = -1;       // SysV id
  std::string name;  // file name under /dev/shm or /dev/mqueue
  uint32_t owner;    // the matching UID/GID
};

// Where to look (overridable for tests).
struct Roots {
  std::string sysvipc = "/proc/sysvipc";
  std::string dev_shm = "/dev/shm";  // empty: skip (every instance had a private /dev/shm)
  std::string mqueue = "/dev/mqueue";
};

// Objects owned by an ID in [lo, hi].
std::vector<Object> owned_in_range(uint32_t lo, uint32_t hi, const Roots& roots = {});

struct Failure {
  uint32_t owner;
  Object object;
  int err;
};
// Removes every object owned by one of `ids`; returns what could not be removed.
std::vector<Failure> remove_owned_by(const std::unordered_set<uint32_t>& ids, const Roots& roots = {});

const char* kind_name(Kind k) noexcept;

}  // namespace superd::ipc
