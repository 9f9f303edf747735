#include "sandbox/dirs.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace superd::sandbox {
namespace {

namespace fs = std::filesystem;

std::error_code last_error() {
  return {errno, std::generic_category()};
}

std::string join(const std::string& a, const std::string& b) {
  return a.back() == '/' ? a + b : a + "/" + b;
}

// mkdir -p with a mode for the last component; existing directories are left alone.
std::error_code make_dirs(const std::string& path, mode_t mode, uid_t uid, gid_t gid, std::string& failed) {
  std::error_code ec;
  fs::path p(path);
  if (!fs::exists(p.parent_path())) {
    fs::create_directories(p.parent_path(), ec);
    if (ec) return failed = p.parent_path().string(), ec;
  }
  if (::mkdir(path.c_str(), mode) == 0) {
    if (::chown(path.c_str(), uid, gid) != 0 || ::chmod(path.c_str(), mode) != 0) return failed = path, last_error();
  } else if (errno != EEXIST) {
    return failed = path, last_error();
  }
  return {};
}

struct RootDirs {
  const std::string* root;
  const config::ExecDirs* dirs;
};

}  // namespace

std::vector<std::string> boundary_dirs(const config::SandboxConfig& sb, const Roots& roots) {
  std::vector<std::string> out;
  for (RootDirs rd :
       {RootDirs{&roots.state, &sb.state}, RootDirs{&roots.cache, &sb.cache}, RootDirs{&roots.logs, &sb.logs}})
    for (const std::string& n : rd.dirs->names) out.push_back(join(join(*rd.root, "private"), n));
  return out;
}

std::optional<gid_t> existing_group(const std::vector<std::string>& dirs) {
  for (const std::string& d : dirs) {
    struct stat st {};
    if (::lstat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return st.st_gid;
  }
  return std::nullopt;
}

std::optional<uid_t> existing_owner(const std::vector<std::string>& dirs, OwnerLookup how) {
  for (const std::string& d : dirs) {
    struct stat st {};
    if (how == OwnerLookup::any_owner && ::lstat(d.c_str(), &st) == 0) return st.st_uid;
    if (how == OwnerLookup::non_root && ::stat(d.c_str(), &st) == 0 && st.st_uid != 0) return st.st_uid;
  }
  return std::nullopt;
}

std::error_code chown_tree(const std::string& path, uid_t uid, gid_t gid, size_t& changed) {
  static thread_local uid_t t_uid;
  static thread_local gid_t t_gid;
  static thread_local size_t* t_changed;
  static thread_local int t_err;
  t_uid = uid, t_gid = gid, t_changed = &changed, t_err = 0;
  int rc = ::nftw(
      path.c_str(),
      [](const char* p, const struct stat* st, int, FTW*) -> int {
        if (st->st_uid == t_uid && st->st_gid == t_gid) return 0;
        if (::lchown(p, t_uid, t_gid) != 0) {
          t_err = errno;
          return 1;
        }
        ++*t_changed;
        return 0;
      },
      64, FTW_PHYS | FTW_MOUNT);
  if (rc != 0) return {t_err ? t_err : errno, std::generic_category()};
  return {};
}

std::error_code prepare_dirs(const config::SandboxConfig& sb, const Roots& roots, uid_t owner, gid_t gid,
                             mode_t mode_bits, std::string& failed) {
  for (RootDirs rd :
       {RootDirs{&roots.state, &sb.state}, RootDirs{&roots.cache, &sb.cache}, RootDirs{&roots.logs, &sb.logs}}) {
    if (rd.dirs->names.empty()) continue;
    std::string priv = join(*rd.root, "private");
    if (auto ec = make_dirs(priv, 0700, 0, 0, failed)) return ec;
    // The boundary must be 0700 root whatever it was: it is what keeps recycled UIDs out.
    if (::chown(priv.c_str(), 0, 0) != 0 || ::chmod(priv.c_str(), 0700) != 0) return failed = priv, last_error();
    for (const std::string& name : rd.dirs->names) {
      std::string dir = join(priv, name);
      // Parents of nested names are root-owned and traversable.
      for (size_t pos = name.find('/'); pos != std::string::npos; pos = name.find('/', pos + 1))
        if (auto ec = make_dirs(join(priv, name.substr(0, pos)), 0755, 0, 0, failed)) return ec;
      mode_t mode = rd.dirs->mode | mode_bits;
      if (auto ec = make_dirs(dir, mode, owner, gid, failed)) return ec;
      struct stat st {};
      if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return failed = dir, std::make_error_code(std::errc::not_a_directory);
      if (st.st_uid != owner || st.st_gid != gid) {
        // The only recursive chown: the tree belongs to another UID/GID (first start, or the
        // preferred ID was taken).
        size_t changed = 0;
        if (auto ec = chown_tree(dir, owner, gid, changed)) return failed = dir, ec;
      }
      if (::chmod(dir.c_str(), mode) != 0) return failed = dir, last_error();
      // <root>/NAME -> private/NAME. A real directory there (data from before the boundary) is
      // not moved silently.
      std::string link = join(*rd.root, name);
      std::string target = "private/" + name;
      for (size_t n = std::count(name.begin(), name.end(), '/'); n > 0; --n) target = "../" + target;
      struct stat lst {};
      if (::lstat(link.c_str(), &lst) == 0) {
        if (!S_ISLNK(lst.st_mode)) return failed = link, std::make_error_code(std::errc::file_exists);
        char buf[4096];
        ssize_t len = ::readlink(link.c_str(), buf, sizeof buf - 1);
        if (len >= 0 && std::string(buf, static_cast<size_t>(len)) == target) continue;
        ::unlink(link.c_str());
      } else {
        std::error_code ec;
        fs::create_directories(fs::path(link).parent_path(), ec);
      }
      if (::symlink(target.c_str(), link.c_str()) != 0) return failed = link, last_error();
    }
  }
  for (const std::string& name : sb.runtime.names)
    if (auto ec = make_dirs(join(roots.runtime, name), 0755, 0, 0, failed)) return ec;
  return {};
}

std::error_code prepare_runtime(const Roots& roots, std::string& failed) {
  std::string dir = join(roots.runtime, "superd");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return failed = dir, ec;
  std::string f = join(dir, "inaccessible");
  int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) return failed = f, last_error();
  ::fchmod(fd, 0);
  ::close(fd);
  return {};
}

}  // namespace superd::sandbox
