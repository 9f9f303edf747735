#include "cleanup/ipc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "util/unique_fd.hpp"

namespace superd::cleanup::ipc {
namespace {

// Reads /proc/sysvipc/{shm,sem,msg}. The header names the columns; their order differs per
// file, so the id and the four owner columns are found by name.
// How many objects of a kind exist in this IPC namespace: one syscall, where reading and
// parsing /proc/sysvipc costs three and a few dozen microseconds. -1 if unknown.
long sysv_count(Kind kind) {
  if (kind == Kind::shm) {
    shm_info info{};
    return ::shmctl(0, SHM_INFO, reinterpret_cast<shmid_ds*>(&info)) < 0 ? -1 : info.used_ids;
  }
  if (kind == Kind::sem) {
    seminfo info{};
    return ::semctl(0, 0, SEM_INFO, &info) < 0 ? -1 : info.semusz;
  }
  msginfo info{};
  return ::msgctl(0, MSG_INFO, reinterpret_cast<msqid_ds*>(&info)) < 0 ? -1 : info.msgpool;
}

// One row of /proc/sysvipc/*: the id and the four owner columns.
struct SysvRow {
  int id = -1;
  uint32_t ids[4] = {};  // uid, gid, cuid, cgid
  bool has[4] = {};
};

// fn(row) for each object of the kind.
template <typename Fn>
void each_sysv(const Roots& roots, Kind kind, Fn fn) {
  const char* file = kind == Kind::shm ? "shm" : kind == Kind::sem ? "sem" : "msg";
  if (roots.sysvipc == "/proc/sysvipc" && sysv_count(kind) == 0) return;
  std::ifstream in(roots.sysvipc + "/" + file);
  std::string line;
  if (!std::getline(in, line)) return;
  std::istringstream hs(line);
  std::vector<std::string> cols;
  for (std::string c; hs >> c;) cols.push_back(c);
  int id_col = 1, owner_cols[4] = {-1, -1, -1, -1};
  const char* owner_names[4] = {"uid", "gid", "cuid", "cgid"};
  for (size_t i = 0; i < cols.size(); ++i)
    for (int k = 0; k < 4; ++k)
      if (cols[i] == owner_names[k]) owner_cols[k] = static_cast<int>(i);
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<unsigned long> v;
    for (std::string f; ls >> f && v.size() < cols.size();) v.push_back(std::strtoul(f.c_str(), nullptr, 10));
    if (v.size() <= static_cast<size_t>(id_col)) continue;
    SysvRow row;
    row.id = static_cast<int>(v[static_cast<size_t>(id_col)]);
    for (int k = 0; k < 4; ++k)
      if (owner_cols[k] >= 0 && static_cast<size_t>(owner_cols[k]) < v.size()) {
        row.ids[k] = static_cast<uint32_t>(v[static_cast<size_t>(owner_cols[k])]);
        row.has[k] = true;
      }
    fn(row);
  }
}

// Files under a directory; fn(name, uid, gid).
template <typename Fn>
void each_file(const std::string& dir, Fn fn) {
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) return;
  DIR* dp = ::fdopendir(::dup(d.get()));
  if (!dp) return;
  while (dirent* e = ::readdir(dp)) {
    if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
    struct stat st {};
    if (::fstatat(d.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) fn(e->d_name, st.st_uid, st.st_gid);
  }
  ::closedir(dp);
}

template <typename Match>
std::vector<Object> collect(const Roots& roots, Match match) {
  std::vector<Object> out;
  for (Kind k : {Kind::shm, Kind::sem, Kind::msg})
    each_sysv(roots, k, [&](const SysvRow& r) {
      for (int c = 0; c < 4; ++c)
        if (r.has[c] && match(r.ids[c])) {
          out.push_back({k, r.id, {}, r.ids[c], r.has[2] ? r.ids[2] : r.ids[c]});
          return;  // one entry per object
        }
    });
  auto files = [&](const std::string& dir, Kind k) {
    each_file(dir, [&](const char* name, uint32_t uid, uint32_t gid) {
      if (match(uid))
        out.push_back({k, -1, name, uid, uid});
      else if (match(gid))
        out.push_back({k, -1, name, gid, gid});
    });
  };
  if (!roots.dev_shm.empty()) files(roots.dev_shm, Kind::posix_shm);
  if (!roots.mqueue.empty()) files(roots.mqueue, Kind::mqueue);
  return out;
}

}  // namespace

const char* kind_name(Kind k) noexcept {
  switch (k) {
    case Kind::shm:
      return "sysv-shm";
    case Kind::sem:
      return "sysv-sem";
    case Kind::msg:
      return "sysv-msg";
    case Kind::posix_shm:
      return "posix-shm";
    case Kind::mqueue:
      return "mqueue";
  }
  return "?";
}

std::vector<Object> owned_in_range(uint32_t lo, uint32_t hi, const Roots& roots) {
  return collect(roots, [&](uint32_t id) { return id >= lo && id <= hi; });
}

int remove(const Object& o, const Roots& roots) {
  int rc = 0;
  switch (o.kind) {
    case Kind::shm:
      rc = ::shmctl(o.id, IPC_RMID, nullptr);
      break;
    case Kind::sem:
      rc = ::semctl(o.id, 0, IPC_RMID);
      break;
    case Kind::msg:
      rc = ::msgctl(o.id, IPC_RMID, nullptr);
      break;
    case Kind::posix_shm:
      rc = ::unlink((roots.dev_shm + "/" + o.name).c_str());
      break;
    case Kind::mqueue:
      rc = ::unlink((roots.mqueue + "/" + o.name).c_str());
      break;
  }
  // Gone already (EINVAL/EIDRM for SysV, ENOENT for files) is success.
  if (rc != 0 && errno != ENOENT && errno != EINVAL && errno != EIDRM) return errno;
  return 0;
}

constexpr decltype(statfs::f_type) kMqueueMagic = 0x19800202;  // MQUEUE_MAGIC, linux/magic.h

std::error_code mount_private_mqueue(const std::string& dir) {
  auto err = [] { return std::error_code(errno, std::generic_category()); };
  // An upgrade's new image runs in the namespace the old one made: its mount is there already.
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) == 0 && fs.f_type == kMqueueMagic) return {};
  if (::unshare(CLONE_NEWNS) != 0) return err();
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return err();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return err();
  if (::mount("mqueue", dir.c_str(), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) return err();
  // Its root stays as it is (1777): every mqueue mount of an IPC namespace shares one
  // superblock, the one mq_open() uses, so a chmod here would break mq_open() for every user.
  return {};
}

std::vector<Failure> remove_owned_by(const std::unordered_set<uint32_t>& ids, const Roots& roots) {
  std::vector<Failure> failures;
  if (ids.empty()) return failures;
  for (const Object& o : collect(roots, [&](uint32_t id) { return ids.count(id) != 0; }))
    if (int err = remove(o, roots)) failures.push_back({o.owner, o, err});
  return failures;
}

}  // namespace superd::cleanup::ipc
