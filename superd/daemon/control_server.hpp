// The control socket's listener (<runtime_root>/superd/control, SOCK_SEQPACKET, 0600): it
// accepts and hands each connection whose request has arrived to the daemon. Bounded: at most
// kMaxPending connections wait for their request, each for at most kRequestTimeout; past the cap
// the oldest waiting one is closed, so a client that sends its request at once (superd status,
// reload, run) always gets through while a stuck or hostile one cannot hold fds forever.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace superd::daemon {

class ControlServer {
 public:
  using Connection = std::shared_ptr<boost::asio::posix::stream_descriptor>;
  using Handler = std::function<void(Connection)>;  // a connection whose request is readable
  static constexpr size_t kMaxPending = 64;
  static constexpr std::chrono::seconds kRequestTimeout{5};

  ControlServer(boost::asio::io_context& io, Handler on_request)
      : io_(io), sock_(io), on_request_(std::move(on_request)) {}
  // Binds `path` (replacing a stale socket), mode 0600, and starts accepting.
  // `inherited`: the listening socket an upgrade's old image passed on (bound there already).
  std::error_code open(const std::string& path, int inherited = -1);
  int native() { return sock_.is_open() ? sock_.native_handle() : -1; }  // borrowed, for an upgrade
  // An upgrade: the accepted connections whose request has not been served (it may be there
  // already), handed to the new image, which serves them as any other (borrowed fds).
  std::vector<int> pending_fds() const;
  void adopt(int fd);
  // Stops accepting and removes the socket file; connections being served are not touched.
  void close();
  bool is_open() const { return sock_.is_open(); }

 private:
  void arm();
  void admit(int fd);

  boost::asio::io_context& io_;
  boost::asio::posix::stream_descriptor sock_;
  Handler on_request_;
  std::string path_;
  std::map<uint64_t, Connection> pending_;  // by serial: the oldest first
  uint64_t serial_ = 0, evictions_ = 0;
};

}  // namespace superd::daemon
