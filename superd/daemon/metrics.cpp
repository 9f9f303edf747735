// The metrics endpoint (metrics.hpp) and what it says (Daemon::metrics_text).
#include "daemon/metrics.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "daemon/hub.hpp"
#include "listener/listener.hpp"
#include "util/log.hpp"

namespace superd::daemon {

struct MetricsServer::Conn {
  explicit Conn(boost::asio::io_context& io, int fd) : sd(io, fd), timer(io) {}
  boost::asio::posix::stream_descriptor sd;
  boost::asio::steady_timer timer;
  std::string request, reply;
  bool done = false;
};

std::error_code MetricsServer::open(const net::ListenSpec& spec, std::vector<net::Cidr> allow) {
  std::error_code ec;
  listener::Options opt;
  UniqueFd fd = listener::open(spec, opt, ec);
  if (!fd) return ec;
  spec_ = spec;
  allow_ = std::move(allow);
  listener_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd.release());
  arm();
  return {};
}

void MetricsServer::close() {
  if (listener_) {
    boost::system::error_code ignored;
    listener_->close(ignored);
    listener::unlink_path(spec_);
    listener_.reset();
  }
  for (auto& c : conns_) {
    boost::system::error_code ignored;
    c->timer.cancel();
    c->sd.close(ignored);
  }
  conns_.clear();
}

void MetricsServer::arm() {
  listener_->async_wait(boost::asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec || !listener_) return;
    on_readable();
    if (listener_) arm();
  });
}

void MetricsServer::on_readable() {
  for (int i = 0; i < 16; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd =
        ::accept4(listener_->native_handle(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    bool allowed = peer.ss_family == AF_UNIX;
    for (const auto& c : allow_) allowed |= c.contains(reinterpret_cast<const sockaddr*>(&peer));
    if (!allowed) {
      ::close(fd);  // not a peer metrics_allow lets in: no answer at all
      continue;
    }
    if (conns_.size() >= kMaxConnections) finish(conns_.front());
    auto c = std::make_shared<Conn>(io_, fd);
    conns_.push_back(c);
    c->timer.expires_after(kTimeout);
    c->timer.async_wait([this, c](boost::system::error_code e) {
      if (!e) finish(c);  // too slow to send a request (or to take the answer)
    });
    read(c);
  }
}

void MetricsServer::read(const std::shared_ptr<Conn>& c) {
  c->sd.async_wait(boost::asio::posix::descriptor_base::wait_read, [this, c](boost::system::error_code ec) {
    if (ec || c->done) return;
    char buf[1024];
    ssize_t n = ::read(c->sd.native_handle(), buf, sizeof buf);
    if (n <= 0) return finish(c);
    c->request.append(buf, static_cast<size_t>(n));
    if (c->request.find("\r\n\r\n") != std::string::npos || c->request.find("\n\n") != std::string::npos)
      return answer(c);
    if (c->request.size() >= kMaxRequest) {
      c->reply = "HTTP/1.0 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
      return answer(c);
    }
    read(c);
  });
}

void MetricsServer::answer(const std::shared_ptr<Conn>& c) {
  if (c->reply.empty()) {
    std::string line = c->request.substr(0, c->request.find_first_of("\r\n"));
    auto status = [](const char* s, const std::string& body, const char* type) {
      return std::string("HTTP/1.0 ") + s + "\r\nContent-Type: " + type +
             "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    };
    if (line.rfind("GET ", 0) != 0)
      c->reply = status("405 Method Not Allowed", "only GET\n", "text/plain") + "";
    else if (line.rfind("GET /metrics ", 0) != 0 && line != "GET /metrics")
      c->reply = status("404 Not Found", "see /metrics\n", "text/plain");
    else
      c->reply = status("200 OK", render_(), "text/plain; version=0.0.4; charset=utf-8");
  }
  boost::asio::async_write(c->sd, boost::asio::buffer(c->reply),
                           [this, c](boost::system::error_code, size_t) { finish(c); });
}

void MetricsServer::finish(const std::shared_ptr<Conn>& c) {
  if (c->done) return;
  c->done = true;
  boost::system::error_code ignored;
  c->timer.cancel();
  c->sd.close(ignored);
  std::erase(conns_, c);
}

namespace {
std::string label(const std::string& v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') out += '\\';
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out += ch;
  }
  return out;
}
}  // namespace

std::string Daemon::metrics_text() const {
  fmt::memory_buffer b;
  auto out = std::back_inserter(b);
  auto head = [&](const char* name, const char* type, const char* help) {
    fmt::format_to(out, "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  std::vector<const Service*> all;
  for (const auto* list : {&services_, &retired_})
    for (const auto& s : *list)
      if (!s->cfg->name.empty()) all.push_back(s.get());
  head("superd_connections_accepted_total", "counter", "Connections admitted and started (START lines).");
  for (auto* s : all)
    fmt::format_to(out, "superd_connections_accepted_total{{service=\"{}\"}} {}\n", label(s->cfg->name),
                   s->counters.accepted);
  head("superd_connections_refused_total", "counter", "Connections refused, by the kind of rule.");
  for (auto* s : all)
    for (const auto& [reason, n] : s->counters.refused_by)
      fmt::format_to(out, "superd_connections_refused_total{{service=\"{}\",reason=\"{}\"}} {}\n", label(s->cfg->name),
                     reason, n);
  head("superd_connections_failed_total", "counter", "Instances that could not be started, by failed step.");
  for (auto* s : all)
    for (const auto& [step, n] : s->counters.failed_by)
      fmt::format_to(out, "superd_connections_failed_total{{service=\"{}\",step=\"{}\"}} {}\n", label(s->cfg->name),
                     label(step), n);
  head("superd_connections_ended_total", "counter", "Connections ended, by exit status class (ok: 0, error, signal).");
  for (auto* s : all)
    for (auto [cls, n] : {std::pair{"ok", s->counters.ended_ok},
                          {"error", s->counters.ended_error},
                          {"signal", s->counters.ended_signal}})
      fmt::format_to(out, "superd_connections_ended_total{{service=\"{}\",status=\"{}\"}} {}\n", label(s->cfg->name),
                     cls, n);
  head("superd_instances_live", "gauge", "Live instances and in-loop sessions.");
  for (auto* s : all)
    fmt::format_to(out, "superd_instances_live{{service=\"{}\"}} {}\n", label(s->cfg->name), s->policy.gate().live());
  head("superd_spawn_latency_seconds", "histogram", "Accept to a running instance (spawned processes only).");
  for (auto* s : all) {
    const auto& c = s->counters;
    std::string n = label(s->cfg->name);
    for (size_t i = 0; i < std::size(c.kBuckets); ++i)
      fmt::format_to(out, "superd_spawn_latency_seconds_bucket{{service=\"{}\",le=\"{}\"}} {}\n", n, c.kBuckets[i],
                     c.spawn_buckets[i]);
    fmt::format_to(out, "superd_spawn_latency_seconds_bucket{{service=\"{}\",le=\"+Inf\"}} {}\n", n, c.spawn_count);
    fmt::format_to(out, "superd_spawn_latency_seconds_sum{{service=\"{}\"}} {}\n", n, c.spawn_sum);
    fmt::format_to(out, "superd_spawn_latency_seconds_count{{service=\"{}\"}} {}\n", n, c.spawn_count);
  }
  head("superd_zygote_restarts_total", "counter", "Zygotes that died and were replaced.");
  for (auto* s : all)
    fmt::format_to(out, "superd_zygote_restarts_total{{service=\"{}\"}} {}\n", label(s->cfg->name),
                   s->counters.zygote_restarts);
  head("superd_proxy_health_checks_total", "counter",
       "PROXY LOCAL headers (a balancer's health checks), spawning nothing.");
  for (auto* s : all)
    if (s->cfg->socket.proxy_protocol)
      fmt::format_to(out, "superd_proxy_health_checks_total{{service=\"{}\"}} {}\n", label(s->cfg->name),
                     s->counters.proxy_local);
  uint32_t blocked = pool_.blocked_summary().unavailable;
  head("superd_uid_pool_size", "gauge", "UIDs in dynamic_uid_range.");
  fmt::format_to(out, "superd_uid_pool_size {}\n", pool_.size());
  head("superd_uid_pool_leased", "gauge", "UIDs leased now.");
  fmt::format_to(out, "superd_uid_pool_leased {}\n", pool_.held());
  head("superd_uid_pool_quarantined", "gauge", "UIDs never to be leased again while superd runs.");
  fmt::format_to(out, "superd_uid_pool_quarantined {}\n", pool_.quarantined());
  head("superd_uid_pool_free", "gauge", "UIDs free to lease.");
  fmt::format_to(out, "superd_uid_pool_free {}\n", pool_.size() - pool_.held() - blocked);
  head("superd_idmap_namespaces_built_total", "counter",
       "User namespaces built for idmapped directories: ahead of the connection, or on its path (a miss).");
  fmt::format_to(out, "superd_idmap_namespaces_built_total{{when=\"ahead\"}} {}\n", idmap_cache_.built_ahead());
  fmt::format_to(out, "superd_idmap_namespaces_built_total{{when=\"connection\"}} {}\n",
                 idmap_cache_.built_on_connection());
  head("superd_cleanup_batches_total", "counter", "Cleanup batches run (IPC removed, then UIDs returned).");
  fmt::format_to(out, "superd_cleanup_batches_total {}\n", cleanup_batches_);
  head("superd_cleanup_batch_seconds_total", "counter", "Time spent in cleanup batches.");
  fmt::format_to(out, "superd_cleanup_batch_seconds_total {}\n", cleanup_seconds_);
  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++fds;
  head("superd_open_fds", "gauge", "superd's open file descriptors.");
  fmt::format_to(out, "superd_open_fds {}\n", fds);
  long pages = 0, rss = 0;
  std::ifstream("/proc/self/statm") >> pages >> rss;
  head("superd_resident_memory_bytes", "gauge", "superd's resident set size.");
  fmt::format_to(out, "superd_resident_memory_bytes {}\n", rss * ::sysconf(_SC_PAGESIZE));
  return fmt::to_string(b);
}

}  // namespace superd::daemon
