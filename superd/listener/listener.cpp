#include "listener/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace superd::listener {
namespace {
std::error_code last_error() { return {errno, std::generic_category()}; }
}  // namespace

Options options_from(const config::SocketConfig& s) {
  return {s.backlog,        s.reuse_port, s.socket_mode, s.socket_user, s.socket_group,
          s.bind_ipv6_only, s.no_delay,   s.keep_alive};
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
      bool dual = spec.kind == net::Kind::dual ||
                  (spec.is_wildcard() && opt.bind_ipv6_only == config::BindIpv6Only::both);
      const int* v6only = dual ? &zero : &one;
      if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only, sizeof one) != 0) return ec = last_error(), UniqueFd();
    }
    if (!datagram && opt.no_delay && ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
      return ec = last_error(), UniqueFd();
    if (!datagram && opt.keep_alive && ::setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0)
      return ec = last_error(), UniqueFd();
  } else if (spec.kind == net::Kind::unix_path) {
    // Parent directories are created as systemd's ListenStream= does (0755, root).
    std::error_code mk;
    std::filesystem::create_directories(std::filesystem::path(spec.path).parent_path(), mk);
    // A socket file left by an earlier run: replace it; refuse to replace anything else.
    struct stat st {};
    if (::lstat(spec.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return ec = std::make_error_code(std::errc::file_exists), UniqueFd();
      ::unlink(spec.path.c_str());
    }
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&spec.addr), spec.addr_len) != 0)
    return ec = last_error(), UniqueFd();
  if (spec.kind == net::Kind::unix_path) {
    if (::chmod(spec.path.c_str(), opt.socket_mode) != 0) return ec = last_error(), UniqueFd();
    if ((opt.socket_user || opt.socket_group) &&
        ::chown(spec.path.c_str(), opt.socket_user.value_or(static_cast<uid_t>(-1)),
                opt.socket_group.value_or(static_cast<gid_t>(-1))) != 0)
      return ec = last_error(), UniqueFd();
  }
  if (!datagram && ::listen(fd.get(), opt.backlog) != 0) return ec = last_error(), UniqueFd();
  return fd;
}

void unlink_path(const net::ListenSpec& spec) noexcept {
  if (spec.kind == net::Kind::unix_path) ::unlink(spec.path.c_str());
}

}  // namespace superd::listener
