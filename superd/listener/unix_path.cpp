// UNIX path sockets bound through checked, symlink-free directories; see the header for the rule.
// Start-up and reload only: failures are error codes plus one sentence for the operator.
#include "listener/unix_path.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

namespace superd::listener::unix_path {
namespace {

std::error_code last_error() {
  return {errno, std::generic_category()};
}

class Category : public std::error_category {
 public:
  const char* name() const noexcept override { return "listen path"; }
  std::string message(int ev) const override {
    switch (static_cast<Refusal>(ev)) {
      case Refusal::symlink:
        return "a parent directory is a symlink";
      case Refusal::writable_by_others:
        return "a parent directory is writable by others without the sticky bit";
      case Refusal::foreign_owner:
        return "a parent directory belongs to a user other than root or socket_user";
      case Refusal::dot_component:
        return "\".\" or \"..\" in a listen path";
      case Refusal::not_a_socket:
        return "the path exists and is not a socket";
      case Refusal::foreign_socket:
        return "another user's socket is in the way";
    }
    return "refused";
  }
};

// One directory of the walk against the rule.
std::error_code check_dir(int fd, const std::string& path, const std::string& dir, std::optional<uid_t> owner,
                          const std::string& trusted_root, bool& sticky, std::string& detail) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return last_error();
  bool prepared = !trusted_root.empty() && (dir == "/" || trusted_root == dir || trusted_root.rfind(dir + "/", 0) == 0);
  if (prepared) {
    sticky = false;
    return {};
  }
  if (st.st_uid != 0 && (!owner || st.st_uid != *owner)) {
    detail =
        fmt::format("listen path {}: parent {} is owned by uid {}, neither root nor socket_user", path, dir, st.st_uid);
    return make_error(Refusal::foreign_owner);
  }
  sticky = (st.st_mode & S_ISVTX) != 0;
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky) {
    detail = fmt::format("listen path {}: parent {} is writable by others without the sticky bit", path, dir);
    return make_error(Refusal::writable_by_others);
  }
  return {};
}

}  // namespace

const std::error_category& category() noexcept {
  static const Category c;
  return c;
}

std::error_code make_error(Refusal r) noexcept {
  return {static_cast<int>(r), category()};
}

std::error_code open_parent(const std::string& path, std::optional<uid_t> owner, const std::string& trusted,
                            Parent& out, std::string& detail) {
  if (path.empty() || path.front() != '/') return std::make_error_code(std::errc::invalid_argument);
  std::vector<std::string> parts;
  for (size_t i = 1; i <= path.size();) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string_view part(path.data() + i, j - i);
    if (part == "." || part == "..") {
      detail = fmt::format("listen path {}: \".\" and \"..\" are not allowed in it", path);
      return make_error(Refusal::dot_component);
    }
    if (!part.empty()) parts.emplace_back(part);
    i = j + 1;
  }
  if (parts.empty() || path.back() == '/') return std::make_error_code(std::errc::is_a_directory);
  UniqueFd dir(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return last_error();
  std::string at = "/";
  bool sticky = false;
  if (auto ec = check_dir(dir.get(), path, at, owner, trusted, sticky, detail)) return ec;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string& comp = parts[i];
    std::string here = (at == "/" ? "" : at) + "/" + comp;
    UniqueFd next;
    bool created = false;
    // Two rounds at most: open, or create and open; a concurrent creator makes mkdirat fail
    // with EEXIST, and then what it made is opened and judged like anything else.
    for (int round = 0; round < 2 && !next; ++round) {
      next.reset(::openat(dir.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (next) break;
      int err = errno;
      if (err == ENOENT && round == 0) {
        if (::mkdirat(dir.get(), comp.c_str(), 0755) == 0)
          created = true;
        else if (errno != EEXIST) {
          detail = fmt::format("listen path {}: cannot create {}: {}", path, here, std::strerror(errno));
          return last_error();
        }
        continue;
      }
      struct stat st {};
      if ((err == ELOOP || err == ENOTDIR) && ::fstatat(dir.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          detail = fmt::format("listen path {}: parent {} is a symlink", path, here);
          return make_error(Refusal::symlink);
        }
        detail = fmt::format("listen path {}: {} is not a directory", path, here);
        return std::make_error_code(std::errc::not_a_directory);
      }
      detail = fmt::format("listen path {}: cannot open {}: {}", path, here, std::strerror(err));
      return {err, std::generic_category()};
    }
    if (!next) return std::make_error_code(std::errc::no_such_file_or_directory);
    // Ours: root's and 0755 whatever the umask or a set-group-ID parent made of it. Nobody else
    // can have replaced it since mkdirat (the parent passed the rule).
    if (created && (::fchown(next.get(), 0, 0) != 0 || ::fchmod(next.get(), 0755) != 0)) return last_error();
    if (auto ec = check_dir(next.get(), path, here, owner, trusted, sticky, detail)) return ec;
    dir = std::move(next);
    at = here;
  }
  out.dir = std::move(dir);
  out.name = parts.back();
  out.sticky = sticky;
  return {};
}

std::error_code bind_in(int sock, const Parent& p, const std::string& path, const BindOptions& opt, Bound& bound,
                        std::optional<Bound>& replaced, std::string& detail) {
  const char* name = p.name.c_str();
  struct stat st {};
  if (::fstatat(p.dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      detail = fmt::format("listen path {} exists and is not a socket", path);
      return make_error(Refusal::not_a_socket);
    }
    // In a sticky (world-writable) directory anybody may have left that socket: not ours to take.
    if (p.sticky && st.st_uid != 0 && (!opt.user || st.st_uid != *opt.user)) {
      detail = fmt::format("listen path {}: a socket of uid {} is in the way", path, st.st_uid);
      return make_error(Refusal::foreign_socket);
    }
    if (::unlinkat(p.dir.get(), name, 0) != 0 && errno != ENOENT) return last_error();
    replaced = Bound{st.st_dev, st.st_ino};
  } else if (errno != ENOENT) {
    return last_error();
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  int n = std::snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", p.dir.get(), name);
  if (n < 0 || static_cast<size_t>(n) >= sizeof sa.sun_path) {
    detail = fmt::format("listen path {}: the name \"{}\" is too long to bind through its directory", path, p.name);
    return std::make_error_code(std::errc::filename_too_long);
  }
  // The file's mode is 0777 & ~umask at bind(2): set it there, so there is no chmod by path. The
  // daemon is single-threaded; the umask is back before anything else runs.
  mode_t old_umask = ::umask(~opt.mode & 0777);
  int r = ::bind(sock, reinterpret_cast<const sockaddr*>(&sa),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1));
  int err = errno;
  ::umask(old_umask);
  if (r != 0) return {err, std::generic_category()};  // EADDRINUSE: something appeared there meanwhile
  // Record what was bound before handing the file to socket_user, who may then rename it.
  if (::fstatat(p.dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) return last_error();
  bound = Bound{st.st_dev, st.st_ino};
  if ((opt.user || opt.group) && ::fchownat(p.dir.get(), name, opt.user.value_or(static_cast<uid_t>(-1)),
                                            opt.group.value_or(static_cast<gid_t>(-1)), AT_SYMLINK_NOFOLLOW) != 0) {
    std::error_code ec = last_error();
    unlink_if_same(p, bound);
    return ec;
  }
  return {};
}

void unlink_if_same(const Parent& p, const Bound& b) noexcept {
  if (!p.dir) return;
  struct stat st {};
  if (::fstatat(p.dir.get(), p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISSOCK(st.st_mode) && st.st_dev == b.dev && st.st_ino == b.ino) ::unlinkat(p.dir.get(), p.name.c_str(), 0);
}

}  // namespace superd::listener::unix_path
