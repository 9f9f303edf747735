#include "control/control.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace superd::control {

std::string socket_path(const std::string& runtime_root) {
  return runtime_root + (runtime_root.back() == '/' ? "" : "/") + "superd/control";
}

std::error_code send_message(int sock, const std::string& msg, const std::vector<int>& fds) {
  if (msg.size() > kMaxMessage) return std::make_error_code(std::errc::message_size);
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)] = {};
  if (!fds.empty()) {
    if (fds.size() > 8) return std::make_error_code(std::errc::invalid_argument);
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
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)] = {};
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

namespace {

UniqueFd connect_control(const std::string& runtime_root, std::string& error) {
  std::string path = socket_path(runtime_root);
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    error = "control socket path too long: " + path;
    return UniqueFd();
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (!sock || ::connect(sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    error = "cannot reach superd at " + path + ": " + std::strerror(errno) + " (is `superd serve` running?)";
    return UniqueFd();
  }
  return sock;
}

}  // namespace

std::string request(const std::string& runtime_root, const std::string& json, std::string& error) {
  UniqueFd sock = connect_control(runtime_root, error);
  if (!sock) return {};
  if (auto ec = send_message(sock.get(), json)) {
    error = "cannot send the request: " + ec.message();
    return {};
  }
  std::string msg;
  if (auto ec = recv_message(sock.get(), msg)) {
    error = "no answer from superd: " + ec.message();
    return {};
  }
  return msg;
}

int run_client(const std::string& runtime_root, const std::vector<std::string>& argv,
               const std::vector<std::string>& properties, const std::string& unit, std::string& error) {
  UniqueFd sock = connect_control(runtime_root, error);
  if (!sock) return -1;
  nlohmann::json req = {{"op", "run"}, {"argv", argv}, {"properties", properties}, {"unit", unit}};
  if (auto ec = send_message(sock.get(), req.dump(), {0, 1, 2})) {
    error = "cannot send the request: " + ec.message();
    return -1;
  }
  for (;;) {
    std::string msg;
    if (auto ec = recv_message(sock.get(), msg)) {
      error = "superd closed the connection: " + ec.message();
      return -1;
    }
    auto reply = nlohmann::json::parse(msg, nullptr, false);
    if (reply.is_discarded()) {
      error = "bad reply from superd";
      return -1;
    }
    if (reply.contains("error")) {
      error = reply["error"].get<std::string>();
      return -1;
    }
    if (reply.contains("exit")) {
      const auto& e = reply["exit"];
      int code = e.value("code", 1);
      return e.value("signaled", false) ? 128 + code : code;
    }
    // {"ok":true,...}: started; wait for the exit message.
  }
}

}  // namespace superd::control
