// See notify.hpp.
#include "daemon/notify.hpp"

#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace superd::daemon {

Notifier::Notifier(boost::asio::io_context& io) : status_timer_(io), watchdog_timer_(io) {
  const char* ns = ::getenv("NOTIFY_SOCKET");
  if (!ns || (ns[0] != '/' && ns[0] != '@') || std::strlen(ns) >= sizeof addr_.sun_path) return;
  addr_.sun_family = AF_UNIX;
  size_t len = std::strlen(ns);
  std::memcpy(addr_.sun_path, ns, len);
  if (addr_.sun_path[0] == '@') addr_.sun_path[0] = '\0';
  addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  // The watchdog is ours if WATCHDOG_PID is unset or names this process.
  const char* usec = ::getenv("WATCHDOG_USEC");
  const char* pid = ::getenv("WATCHDOG_PID");
  if (usec && (!pid || std::strtol(pid, nullptr, 10) == ::getpid()))
    watchdog_ = std::chrono::microseconds(std::strtoull(usec, nullptr, 10));
}

void Notifier::send(std::string_view message) {
  if (fd_.get() < 0) return;
  ::sendto(fd_.get(), message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr_),
           addr_len_);
}

void Notifier::reloading() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000));
}

void Notifier::start(std::function<std::string()> status) {
  if (fd_.get() < 0) return;
  status_ = std::move(status);
  status_tick();
  if (watchdog_.count() > 0) watchdog_tick();
}

void Notifier::stop() {
  stopped_ = true;
  status_timer_.cancel();
  watchdog_timer_.cancel();
}

void Notifier::status_tick() {
  if (stopped_) return;
  std::string s = "STATUS=" + status_();
  if (s != last_status_) send(s);
  last_status_ = std::move(s);
  status_timer_.expires_after(std::chrono::seconds(1));
  status_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) status_tick();
  });
}

void Notifier::watchdog_tick() {
  if (stopped_) return;
  send("WATCHDOG=1");
  watchdog_timer_.expires_after(watchdog_ / 2);
  watchdog_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) watchdog_tick();
  });
}

}  // namespace superd::daemon
