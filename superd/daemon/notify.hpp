// sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (a path or an abstract name).
// READY=1 at start and after each reload, RELOADING=1 with MONOTONIC_USEC= before one (what
// Type=notify-reload waits for), STOPPING=1 at shutdown, STATUS= at most once a second and only
// when it changed, and WATCHDOG=1 every half of $WATCHDOG_USEC when that is set for this PID.
// Without $NOTIFY_SOCKET every call is a no-op.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <sys/socket.h>
#include <sys/un.h>

#include <boost/asio.hpp>
#include <functional>
#include <string>
#include <string_view>

#include "util/unique_fd.hpp"

namespace superd::daemon {

class Notifier {
 public:
  explicit Notifier(boost::asio::io_context& io);
  bool enabled() const { return fd_.get() >= 0; }
  void send(std::string_view message);
  void reloading();  // RELOADING=1 and MONOTONIC_USEC=now
  // After READY: the STATUS= line from `status` once a second (when it changed), and the
  // watchdog's keep-alive.
  void start(std::function<std::string()> status);
  void stop();

 private:
  void status_tick();
  void watchdog_tick();
  UniqueFd fd_;
  sockaddr_un addr_{};
  socklen_t addr_len_ = 0;
  boost::asio::steady_timer status_timer_, watchdog_timer_;
  std::chrono::microseconds watchdog_{0};
  std::function<std::string()> status_;
  std::string last_status_;
  bool stopped_ = false;
};

}  // namespace superd::daemon
