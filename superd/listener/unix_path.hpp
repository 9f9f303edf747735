// UNIX path sockets, bound without trusting the path. superd runs as root and a listen path may
// lie under a directory other users can write: followed naively, a symlink planted there makes
// root replace (and later unlink) a socket in a directory the planter could never touch.
//
// The rule, checked on every directory from "/" down to the socket's own, each opened relative
// to the one before with O_NOFOLLOW (so what is checked is what is used, and no symlink is ever
// followed):
//   - it is not a symlink;
//   - it is owned by root or by the socket's configured owner (socket_user);
//   - it is not writable by group or others, unless it has the sticky bit (then nobody else can
//     rename or remove what root creates in it).
// Missing directories are created 0755 root, as systemd's ListenStream= does. The socket is bound
// as "/proc/self/fd/<dir>/<name>", through the checked directory itself (so getsockname shows
// that name, not the configured path), with its mode set by the umask at bind(2): no chmod by
// path afterwards. A stale socket in the way is replaced; in a sticky directory only one of
// root's or socket_user's (anybody may create files there).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <system_error>

#include "util/unique_fd.hpp"

namespace superd::listener::unix_path {

// Why a listen path was refused: error codes of category().
enum class Refusal {
  symlink = 1,         // a parent directory is a symlink
  writable_by_others,  // a parent directory is group/other-writable without the sticky bit
  foreign_owner,       // a parent directory belongs to a user other than root or socket_user
  dot_component,       // "." or ".." in the path
  not_a_socket,        // the path exists and is not a socket
  foreign_socket,      // another user's socket is in the way in a sticky directory
};
const std::error_category& category() noexcept;
std::error_code make_error(Refusal r) noexcept;

struct Parent {
  UniqueFd dir;      // the socket's directory, opened without following symlinks
  std::string name;  // the socket's name in it
  bool sticky = false;
};

// The file bound: what superd may later remove.
struct Bound {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const Bound&) const = default;
};

// Walks `path` (absolute) as the rule above says, creating missing directories; on failure
// `detail` says which directory and why ("listen path P: parent D is a symlink").
// `trusted`: inside a capsule the host's directories are owned by no user the capsule knows
// (their owner reads as the overflow UID); the host prepared `trusted`, the capsule's runtime
// root, so it and its ancestors are taken as they are and the rule applies below it. "": none.
std::error_code open_parent(const std::string& path, std::optional<uid_t> owner, const std::string& trusted,
                            Parent& out, std::string& detail);

struct BindOptions {
  mode_t mode = 0666;
  std::optional<uid_t> user;
  std::optional<gid_t> group;
};
// Binds `sock` to p.name in p.dir: replaces a stale socket (`replaced` gets its identity), sets
// the mode and owner, and returns the identity of the new file in `bound`. On failure after the
// bind the new file is removed again.
std::error_code bind_in(int sock, const Parent& p, const std::string& path, const BindOptions& opt, Bound& bound,
                        std::optional<Bound>& replaced, std::string& detail);

// Removes p.name if it is still the file `b` (not whatever someone put there since).
void unlink_if_same(const Parent& p, const Bound& b) noexcept;

}  // namespace superd::listener::unix_path
