#include "util/fdpass.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace superd::util::fdpass {

std::error_code send_message(int sock, const std::string& msg, const std::vector<int>& fds) {
  if (msg.size() > kMaxMessage) return std::make_error_code(std::errc::message_size);
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    if (fds.size() > kMaxFds) return std::make_error_code(std::errc::invalid_argument);
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  while (::sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
    if (errno != EINTR) return {errno, std::generic_category()};
  return {};
}

std::error_code recv_message(int sock, std::string& msg, std::vector<UniqueFd>* fds, size_t max_fds) {
  msg.assign(kMaxMessage, '\0');
  iovec iov{msg.data(), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  while ((n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0)
    if (errno != EINTR) return {errno, std::generic_category()};
  msg.resize(static_cast<size_t>(n));
  // Take ownership of every fd received, even unwanted ones, so none leaks.
  std::vector<UniqueFd> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        got.emplace_back(fd);
      }
    }
  if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return std::make_error_code(std::errc::message_size);
  if (fds) {
    if (got.size() > max_fds) return std::make_error_code(std::errc::invalid_argument);
    *fds = std::move(got);
  }
  if (n == 0) return std::make_error_code(std::errc::connection_reset);
  return {};
}

}  // namespace superd::util::fdpass
