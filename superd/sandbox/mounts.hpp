// The filesystem view of an instance, as a flat list of mount operations prepared once per
// service in the parent and applied by the child inside its fresh mount namespace. The child
// walks the list without allocating; strings live in the plan. A failed operation is reported
// by its index, so the parent can name the path.
//
// Order (build() in mounts.cpp calls one named step per line): make / private (nothing
// propagates to the host) -> clone the sources of state/cache/logs and bind paths (before
// anything covers them) -> bind writable/read-only paths onto themselves -> make the OS
// read-only -> re-open the writable paths and /dev -> fresh /proc, private /dev, /dev/mqueue ->
// the instance tmpfs (/tmp, /var/tmp, /dev/shm and the runtime directories: one tmpfs, one size
// budget, see add_instance_tmpfs) -> protect /home -> inaccessible paths -> boundary tmpfs over
// <root>/private with the service's own directories attached -> binds -> the service's syslog
// socket at /dev/log -> private /dev sealed read-only -> superd's own runtime directory hidden
// -> "lo" up (private_network).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace superd::sandbox {

enum class Op : uint8_t {
  make_private,  // mount(NULL, path, MS_REC|MS_PRIVATE)
  bind_self,     // bind path onto itself (recursive), so it can carry its own flags
  set_ro,        // mount_setattr: read-only (recursive or not)
  clear_ro,      // mount_setattr: read-write again
  tmpfs,         // tmpfs on path; data = options; mode in data; `owned`: uid=/gid= appended
  proc,          // a fresh procfs for the instance's PID namespace
  mqueue,        // the IPC namespace's own mqueue filesystem
  clone_tree,    // open_tree(source, OPEN_TREE_CLONE [|AT_RECURSIVE]) into slot
  attach_tree,   // move_mount(slot -> path)
  mkdir,         // mkdir(path, mode)
  mknod_char,    // mknod(path, S_IFCHR | mode, dev)
  symlink,       // symlink(source -> path)
  loopback_up,   // bring "lo" up in a fresh network namespace
  bind,          // bind source onto path (not recursive)
  chown_owned,   // chown path to the instance's UID/GID
  mkfile,        // an empty file (mknod S_IFREG): a mountpoint for a bind of a non-directory
};

struct MountOp {
  Op op;
  bool recursive = false;
  bool optional = false;      // a missing path (ENOENT) is skipped
  bool owned = false;         // tmpfs: owned by the instance's UID/GID
  bool per_instance = false;  // done for each instance (fresh tmpfs, proc); else once per service
  mode_t mode = 0;
  dev_t dev = 0;
  int slot = -1;
  const char* path = nullptr;
  const char* source = nullptr;  // bind/clone source, tmpfs options, symlink target
};

// Where the plan puts the service's syslog socket (log_syslog): nowhere (off, no socket), on a
// placeholder in the private /dev, over the host's /dev/log (in the namespace only), or nowhere
// because the host's /dev has no /dev/log to bind over (the daemon warns).
enum class DevLog : uint8_t { none, private_dev, host, no_host_dev_log };

// state_directory_idmap: a boundary directory whose tree is not cloned by the plan but handed
// in per instance, already idmapped (sandbox/idmap.hpp): its slot is filled before the clone
// with the fd the daemon prepared, and a per-instance attach_tree moves it into place.
struct IdmapDir {
  int slot;
  std::string source;  // the host directory ("<root>/private/NAME")
};

struct MountPlan {
  std::vector<MountOp> ops;
  int slots = 0;
  std::vector<IdmapDir> idmapped;  // in boundary order; InstancePlan::idmap_fds follow it
  DevLog dev_log = DevLog::none;
  std::deque<std::string> strings;  // stable storage for the ops' strings

  const char* keep(std::string s) { return strings.emplace_back(std::move(s)).c_str(); }
  std::string describe(size_t index) const;  // "tmpfs /tmp" for error messages
};

struct Roots {
  std::string runtime, state, cache, logs;
};

// Builds the plan for one service. Host-side preparation (directories, mountpoints) is done by
// the daemon (sandbox::prepare_host) before any instance starts. `syslog_socket`: the path of
// the service's syslog socket, bound at /dev/log with log_syslog (empty: none).
MountPlan build(const config::SandboxConfig& sb, const Roots& roots, const std::string& syslog_socket = {});

// Applies the plan; in the child, after clone(CLONE_NEWNS). Returns -1 on success or the index
// of the failed operation (errno set). `slots` has plan.slots entries; `uid` owns runtime dirs.
// `which`: every operation, only the per-service ones (a zygote's namespace), or only the
// per-instance ones (an instance cloned from that namespace).
enum class Which { all, per_service, per_instance };
int apply(const MountPlan& plan, int* slots, uid_t uid, Which which = Which::all) noexcept;

}  // namespace superd::sandbox
