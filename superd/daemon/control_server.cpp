#include "daemon/control_server.hpp"

#include <fcntl.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.hpp"
#include "util/net.hpp"
#include "util/unique_fd.hpp"

namespace superd::daemon {

namespace asio = boost::asio;

std::error_code ControlServer::open(const std::string& path, int inherited) {
  path_ = path;
  if (inherited >= 0) {
    if (::fcntl(inherited, F_SETFD, FD_CLOEXEC) != 0) return {errno, std::generic_category()};
    sock_.assign(inherited);
    arm();
    return {};
  }
  std::string why;
  auto parsed = net::parse_listen(path_, why);
  if (!parsed) return std::make_error_code(std::errc::invalid_argument);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ::unlink(path_.c_str());
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&parsed->addr), parsed->addr_len) != 0 ||
      ::chmod(path_.c_str(), 0600) != 0 || ::listen(fd.get(), 64) != 0)
    return {errno, std::generic_category()};
  sock_.assign(fd.release());
  arm();
  return {};
}

void ControlServer::close() {
  if (!sock_.is_open()) return;
  boost::system::error_code ignored;
  sock_.close(ignored);
  ::unlink(path_.c_str());
}

void ControlServer::arm() {
  sock_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;  // closed
    int fd;
    while ((fd = ::accept4(sock_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) admit(fd);
    arm();
  });
}

std::vector<int> ControlServer::pending_fds() const {
  std::vector<int> fds;
  for (const auto& [id, conn] : pending_) fds.push_back(conn->native_handle());
  return fds;
}

void ControlServer::adopt(int fd) {
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  admit(fd);
}

void ControlServer::admit(int fd) {
  while (pending_.size() >= kMaxPending) {
    auto oldest = pending_.begin();
    if (!evictions_++)
      log::warning("control: {} connections wait for their request; closing the oldest", pending_.size());
    boost::system::error_code ignored;
    oldest->second->close(ignored);  // its wait completes with operation_aborted
    pending_.erase(oldest);
  }
  uint64_t id = ++serial_;
  auto conn = std::make_shared<asio::posix::stream_descriptor>(io_, fd);
  auto timer = std::make_shared<asio::steady_timer>(io_, kRequestTimeout);
  pending_.emplace(id, conn);
  timer->async_wait([this, id](boost::system::error_code e) {
    auto it = pending_.find(id);
    if (e || it == pending_.end()) return;
    boost::system::error_code ignored;
    it->second->close(ignored);  // no request in time
    pending_.erase(it);
  });
  conn->async_wait(asio::posix::descriptor_base::wait_read, [this, id, conn, timer](boost::system::error_code e) {
    timer->cancel();
    if (e || !pending_.erase(id)) return;
    on_request_(conn);
  });
}

}  // namespace superd::daemon
