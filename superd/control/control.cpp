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
