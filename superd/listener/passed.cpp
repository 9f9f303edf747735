// See passed.hpp.
#include "listener/passed.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "util/net.hpp"

namespace superd::listener {
namespace {

// The address a socket is bound to, written as a listen address; "" if it is none of ours.
std::string address_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
  std::string port = std::to_string(net::address_port(sa));
  if (ss.ss_family == AF_INET) return net::address_string(sa) + ":" + port;
  if (ss.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    int v6only = 1;
    socklen_t ol = sizeof v6only;
    ::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &ol);
    if (IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) && !v6only) return "*:" + port;  // a bare "PORT"
    return "[" + net::address_string(sa) + "]:" + port;
  }
  if (ss.ss_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    if (n == 0) return {};
    if (un->sun_path[0] == '\0') return "@" + std::string(un->sun_path + 1, n - 1);
    return std::string(un->sun_path, ::strnlen(un->sun_path, n));
  }
  return {};
}

}  // namespace

std::string Passed::describe() const {
  return "fd " + std::to_string(fd) + " (" + (name.empty() ? "" : name + ", ") + (datagram ? "udp " : "") +
         (address.empty() ? "unknown address" : address) + ")";
}

std::vector<Passed> take_passed_sockets(std::vector<std::string>& warnings) {
  std::vector<Passed> out;
  const char* pid = ::getenv("LISTEN_PID");
  const char* fds = ::getenv("LISTEN_FDS");
  std::string names = ::getenv("LISTEN_FDNAMES") ? ::getenv("LISTEN_FDNAMES") : "";
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!fds) return out;
  if (!pid || std::strtol(pid, nullptr, 10) != ::getpid()) {
    warnings.push_back(std::string("LISTEN_FDS=") + fds + " is for LISTEN_PID=" + (pid ? pid : "(unset)") +
                       ", not superd (pid " + std::to_string(::getpid()) + "): no socket adopted");
    return out;
  }
  long n = std::strtol(fds, nullptr, 10);
  for (long i = 0; i < n && i < 1024; ++i) {
    Passed p;
    p.fd = 3 + static_cast<int>(i);
    size_t colon = names.find(':');
    p.name = names.substr(0, colon);
    names = colon == std::string::npos ? "" : names.substr(colon + 1);
    int type = 0, listening = 0;
    socklen_t tl = sizeof type, ll = sizeof listening;
    if (::getsockopt(p.fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0) {
      warnings.push_back("passed " + p.describe() + " is not a socket: ignored");
      continue;
    }
    ::getsockopt(p.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll);
    p.datagram = type == SOCK_DGRAM;
    p.address = address_of(p.fd);
    if ((type != SOCK_STREAM && type != SOCK_DGRAM) || (type == SOCK_STREAM && !listening) || p.address.empty()) {
      warnings.push_back("passed " + p.describe() + " is not a listening stream or a datagram socket: closed");
      ::close(p.fd);
      continue;
    }
    ::fcntl(p.fd, F_SETFD, FD_CLOEXEC);  // Asio's sockets are not close-on-exec by themselves
    ::fcntl(p.fd, F_SETFL, ::fcntl(p.fd, F_GETFL) | O_NONBLOCK);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace superd::listener
