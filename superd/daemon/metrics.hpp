// GET /metrics: the Prometheus text exposition format on metrics_listen. The HTTP side is
// minimal and bounded: one request per connection, at most 4 KiB of request, 5 s to send it,
// at most 16 connections at once (the oldest is closed past that), peers outside metrics_allow
// closed without an answer; anything but GET /metrics answered 404 or 405. A scrape reads the
// counters the loop keeps (daemon/service.hpp): the connection path only increments them.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "util/net.hpp"
#include "util/unique_fd.hpp"

namespace superd::daemon {

class MetricsServer {
 public:
  static constexpr size_t kMaxRequest = 4096, kMaxConnections = 16;
  static constexpr std::chrono::seconds kTimeout{5};

  MetricsServer(boost::asio::io_context& io, std::function<std::string()> render)
      : io_(io), render_(std::move(render)) {}
  std::error_code open(const net::ListenSpec& spec, std::vector<net::Cidr> allow);
  void close();

 private:
  struct Conn;
  void arm();
  void on_readable();
  void read(const std::shared_ptr<Conn>& c);
  void answer(const std::shared_ptr<Conn>& c);
  void finish(const std::shared_ptr<Conn>& c);
  boost::asio::io_context& io_;
  std::function<std::string()> render_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> listener_;
  net::ListenSpec spec_;
  std::vector<net::Cidr> allow_;
  std::deque<std::shared_ptr<Conn>> conns_;
};

}  // namespace superd::daemon
