// Listening sockets from listen specs. Created non-blocking and close-on-exec; TCP with
// SO_REUSEADDR (and SO_REUSEPORT on request). A bare port binds [::] with IPV6_V6ONLY off:
// one socket that takes IPv4 (as v4-mapped addresses) and IPv6. UNIX path sockets are bound
// through their checked, symlink-free directory (listener/unix_path.hpp: a path under a directory
// others could tamper with is refused), replace a stale socket file, and get socket_mode/
// socket_user/socket_group; abstract ones have no file. Datagram sockets (UDP) are bound the same
// way, without listen().
#pragma once

#include <sys/types.h>

#include <optional>
#include <system_error>

#include "config/config.hpp"
#include "util/unique_fd.hpp"

namespace superd::listener {

struct Options {
  int backlog = 256;
  bool reuse_port = false;
  mode_t socket_mode = 0666;
  std::optional<uid_t> socket_user;
  std::optional<gid_t> socket_group;
  config::BindIpv6Only bind_ipv6_only = config::BindIpv6Only::default_;
  bool no_delay = false;    // TCP_NODELAY and SO_KEEPALIVE are set on the listener: accepted
  bool keep_alive = false;  // connections inherit them, so the connection path has no setsockopt
  // Inside a capsule: the runtime root the host prepared (unix_path::open_parent trusts it).
  std::string trusted_root;
};
Options options_from(const config::SocketConfig& s);

// Binds and listens (or, for a datagram socket, only binds); on failure returns an invalid fd
// and the error.
UniqueFd open(const net::ListenSpec& spec, const Options& opt, std::error_code& ec, bool datagram = false);
// Removes a UNIX path socket's file (listener closed by a reload, shutdown), but only the file
// open() bound there: a file someone put in its place since is left alone, and so is a path this
// process never bound.
void unlink_path(const net::ListenSpec& spec) noexcept;

}  // namespace superd::listener
