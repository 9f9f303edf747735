#include "sandbox/idmap.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace superd::sandbox::idmap {
namespace {

std::error_code last_error() {
  return {errno, std::generic_category()};
}

// The helper's stack. It shares our memory (CLONE_VM: no page-table copy, whatever the
// daemon's size) and only ever blocks in pause() until SIGKILL, so one static stack serves
// every helper: a killed one never runs user code again, and at most one is alive at a time.
alignas(64) char helper_stack[16 * 1024];

int helper_main(void*) noexcept {
  for (;;) ::pause();
}

bool write_map(pid_t pid, const char* which, const char* line, size_t len) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/%s", static_cast<int>(pid), which);
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, line, len) == static_cast<ssize_t>(len);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return ok;
}

}  // namespace

UniqueFd make_userns(uid_t owner, uid_t uid, pid_t& helper, std::error_code& ec) noexcept {
  // CLONE_FILES: the helper shares our fd table instead of copying it. The daemon holds the
  // cache's namespace fds and more; a copy cost the clone a dup of each and the helper's death a
  // filp_flush of each (perf: filp_flush, dnotify_flush, locks_remove_posix on top), which took
  // the idmap bench from 0.87x to 0.53x of superd-state at c=8 with a few thousand cached.
  // Exit signal 0: no SIGCHLD, and the daemon's waitpid(-1, WNOHANG) never sees it (only
  // __WALL does): its reaping stays ours.
  helper = ::clone(helper_main, helper_stack + sizeof helper_stack, CLONE_NEWUSER | CLONE_VM | CLONE_FILES, nullptr);
  if (helper < 0) return ec = last_error(), UniqueFd();
  // From outside, as root of the parent namespace: one line, on-disk owner -> instance UID.
  char line[48];
  int len = std::snprintf(line, sizeof line, "%u %u 1\n", static_cast<unsigned>(owner), static_cast<unsigned>(uid));
  UniqueFd ns;
  if (!write_map(helper, "uid_map", line, static_cast<size_t>(len)) ||
      !write_map(helper, "gid_map", line, static_cast<size_t>(len))) {
    ec = last_error();
  } else {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/ns/user", static_cast<int>(helper));
    ns.reset(::open(path, O_RDONLY | O_CLOEXEC));
    if (!ns) ec = last_error();
  }
  ::kill(helper, SIGKILL);
  return ns;
}

UniqueFd detached_tree(const char* path, int userns, std::error_code& ec) noexcept {
  UniqueFd tree(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
  if (!tree) return ec = last_error(), UniqueFd();
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(userns);
  if (::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return ec = last_error(), UniqueFd();
  return tree;
}

std::string fs_type_name(int64_t f_type) {
  struct Known {
    int64_t magic;
    const char* name;
  };
  static const Known kKnown[] = {
      {EXT4_SUPER_MAGIC, "ext4"},
      {XFS_SUPER_MAGIC, "xfs"},
      {BTRFS_SUPER_MAGIC, "btrfs"},
      {TMPFS_MAGIC, "tmpfs"},
      {RAMFS_MAGIC, "ramfs"},
      {MSDOS_SUPER_MAGIC, "vfat"},
      {EXFAT_SUPER_MAGIC, "exfat"},
      {NFS_SUPER_MAGIC, "nfs"},
      {FUSE_SUPER_MAGIC, "fuse"},
      {OVERLAYFS_SUPER_MAGIC, "overlay"},
      {F2FS_SUPER_MAGIC, "f2fs"},
      {SQUASHFS_MAGIC, "squashfs"},
      {CIFS_SUPER_MAGIC, "cifs"},
      {SMB2_SUPER_MAGIC, "smb2"},
      {V9FS_MAGIC, "9p"},
      {0x2fc12fc1, "zfs"},
      {ISOFS_SUPER_MAGIC, "iso9660"},
      {HUGETLBFS_MAGIC, "hugetlbfs"},
  };
  for (const Known& k : kKnown)
    if (k.magic == f_type) return k.name;
  char hex[32];
  std::snprintf(hex, sizeof hex, "type 0x%llx", static_cast<unsigned long long>(f_type));
  return hex;
}

std::string check_support(const std::string& path) {
  std::error_code ec;
  pid_t helper = -1;
  // Any mapping will do for the trial; nobody to nobody maps nothing anybody owns.
  UniqueFd ns = make_userns(65534, 65534, helper, ec);
  if (helper > 0)
    while (::waitpid(helper, nullptr, __WALL) < 0 && errno == EINTR) {
    }
  if (!ns) return "cannot create a user namespace for the mapping: " + ec.message();
  UniqueFd tree = detached_tree(path.c_str(), ns.get(), ec);
  if (tree) return {};
  if (ec.value() == EINVAL) {
    struct statfs st {};
    std::string type = ::statfs(path.c_str(), &st) == 0 ? fs_type_name(st.f_type) : "its filesystem";
    return path + " is on " + type + ", which does not support idmapped mounts (mount_setattr: EINVAL)";
  }
  return "idmapping " + path + ": " + ec.message();
}

Cache::~Cache() {
  map_.clear();
  reap(true);
}

void Cache::reap(bool wait) noexcept {
  size_t kept = 0;
  for (pid_t pid : dying_) {
    pid_t r;
    while ((r = ::waitpid(pid, nullptr, __WALL | (wait ? 0 : WNOHANG))) < 0 && errno == EINTR) {
    }
    if (r == 0) dying_[kept++] = pid;  // not dead yet: next time
  }
  dying_.resize(kept);
}

int Cache::get(uid_t uid, uid_t owner, std::error_code& ec) noexcept {
  if (auto it = map_.find({uid, owner}); it != map_.end()) return it->second.first.get();
  return build(uid, owner, ec);
}

bool Cache::build_ahead(uid_t uid, uid_t owner) noexcept {
  std::error_code ec;
  if (has(uid, owner) || build(uid, owner, ec) < 0) return false;
  ++ahead_;
  return true;
}

int Cache::build(uid_t uid, uid_t owner, std::error_code& ec) noexcept {
  try {
    auto key = std::make_pair(uid, owner);
    reap(false);
    pid_t helper = -1;
    UniqueFd ns = make_userns(owner, uid, helper, ec);
    if (helper > 0) dying_.push_back(helper);
    if (!ns) return -1;
    if (map_.size() >= kMaxEntries) {
      auto oldest = order_.begin();
      map_.erase(oldest->second);
      order_.erase(oldest);
    }
    uint64_t stamp = ++created_;
    order_.emplace(stamp, key);
    return map_.emplace(key, std::make_pair(std::move(ns), stamp)).first->second.first.get();
  } catch (...) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return -1;
  }
}

std::string make_trees(Cache& cache, const std::vector<IdmapDir>& dirs, uid_t uid, uid_t owner, Trees& out) {
  out.fds.clear();
  std::error_code ec;
  int ns = cache.get(uid, owner, ec);
  if (ns < 0) return "user namespace for the idmapped directories: " + ec.message();
  for (const IdmapDir& d : dirs) {
    UniqueFd t = detached_tree(d.source.c_str(), ns, ec);
    if (!t) return "idmapped mount of " + d.source + ": " + ec.message();
    out.fds.push_back(std::move(t));
  }
  return {};
}

}  // namespace superd::sandbox::idmap
