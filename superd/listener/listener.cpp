#include "listener/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <unordered_map>

#include "listener/unix_path.hpp"
#include "util/log.hpp"

namespace superd::listener {
namespace {
std::error_code last_error() {
  return {errno, std::generic_category()};
}

// The UNIX path sockets superd bound and has not removed yet, by path: the checked directory
// (kept open, so removal goes through the same directory, not the path again) and the file's
// identity, so that unlink_path removes only that file. `superseded` counts listeners of ours
// whose file a later open() replaced (a reload that changes a listener's options opens the new
// socket before it closes the old one): their unlink_path comes first and must not remove the
// successor's file.
struct Owned {
  unix_path::Parent parent;
  unix_path::Bound bound;
  unsigned superseded = 0;
};
std::unordered_map<std::string, Owned>& owned_paths() {
  static std::unordered_map<std::string, Owned> owned;  // the daemon's one thread only
  return owned;
}

// Resolves and binds a path socket safely (unix_path.hpp) and remembers what it bound.
std::error_code bind_path(int fd, const net::ListenSpec& spec, const Options& opt) {
  std::string detail;
  unix_path::Parent parent;
  std::error_code ec = unix_path::open_parent(spec.path, opt.socket_user, opt.trusted_root, parent, detail);
  unix_path::Bound bound;
  std::optional<unix_path::Bound> replaced;
  if (!ec)
    ec = unix_path::bind_in(fd, parent, spec.path, {opt.socket_mode, opt.socket_user, opt.socket_group}, bound,
                            replaced, detail);
  if (ec) {
    // The directory at fault is in `detail` only: say it here, the caller logs the code.
    if (!detail.empty()) log::error("{}", detail);
    return ec;
  }
  auto& owned = owned_paths();
  unsigned superseded = 0;
  if (auto it = owned.find(spec.path); it != owned.end())
    superseded = it->second.superseded + (replaced && *replaced == it->second.bound ? 1 : 0);
  owned[spec.path] = Owned{std::move(parent), bound, superseded};
  return {};
}
}  // namespace

Options options_from(const config::SocketConfig& s) {
  return {s.backlog,     s.reuse_port,   s.socket_mode,
          s.socket_user, s.socket_group, s.bind_ipv6_only,
          s.no_delay,    s.keep_alive,   {}};
}

UniqueFd open(const net::ListenSpec& spec, const Options& opt, std::error_code& ec, bool datagram) {
  int family = spec.is_unix() ? AF_UNIX : spec.kind == net::Kind::inet4 ? AF_INET : AF_INET6;
  UniqueFd fd(::socket(family, (datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ec = last_error(), UniqueFd();
  int one = 1, zero = 0;
  if (!spec.is_unix()) {
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return ec = last_error(), UniqueFd();
    if (opt.reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      return ec = last_error(), UniqueFd();
    if (family == AF_INET6) {
      bool dual =
          spec.kind == net::Kind::dual || (spec.is_wildcard() && opt.bind_ipv6_only == config::BindIpv6Only::both);
      const int* v6only = dual ? &zero : &one;
      if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only, sizeof one) != 0)
        return ec = last_error(), UniqueFd();
    }
    if (!datagram && opt.no_delay && ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
      return ec = last_error(), UniqueFd();
    if (!datagram && opt.keep_alive && ::setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0)
      return ec = last_error(), UniqueFd();
  }
  if (spec.kind == net::Kind::unix_path) {
    // Never bind(2) the path itself: its directories are checked and opened first.
    if ((ec = bind_path(fd.get(), spec, opt))) return UniqueFd();
  } else if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&spec.addr), spec.addr_len) != 0) {
    return ec = last_error(), UniqueFd();
  }
  if (!datagram && ::listen(fd.get(), opt.backlog) != 0) {
    ec = last_error();
    if (auto it = owned_paths().find(spec.path); spec.kind == net::Kind::unix_path && it != owned_paths().end()) {
      unix_path::unlink_if_same(it->second.parent, it->second.bound);
      owned_paths().erase(it);
    }
    return UniqueFd();
  }
  return fd;
}

void unlink_path(const net::ListenSpec& spec) noexcept {
  if (spec.kind != net::Kind::unix_path) return;
  auto& owned = owned_paths();
  auto it = owned.find(spec.path);
  if (it == owned.end()) return;  // not bound by this superd: not ours to remove
  if (it->second.superseded > 0) {
    --it->second.superseded;  // an older listener's file, already replaced by the one recorded
    return;
  }
  unix_path::unlink_if_same(it->second.parent, it->second.bound);
  owned.erase(it);
}

}  // namespace superd::listener
